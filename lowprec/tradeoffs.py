"""Quantization error versus storage bits for MX/BFP elements, outlier records and codebooks.

:func:`error_table` quantizes one sample (by default the built-in activation sample,
:func:`lowprec.demo.sample_activations`) with every configuration of :func:`configurations`
through :func:`golden.quantize_mx` (block 32, round to nearest even) and reports the exact
storage cost and the error of each. :func:`section` is the same for ``make bench`` on two
built-in samples (the activation sample and a heavy-tailed Student-t(3) sample);
``python -m lowprec.tradeoffs`` prints that table as Markdown (the one in ``docs/formats.md``).

Bit accounting (:func:`bits_per_element`), per block of ``B`` elements: 8 scale bits,
``B`` element codes, ``K`` outlier records of ``log2 B`` index bits and ``1 + D + Mo`` code
bits, and a count field of ``ceil(log2(K + 1))`` bits when ``K > 0`` (the ``count`` field of
``hdl.mx_layouts.mx_block_layout``); divided by ``B``. Codebook levels are configuration, not
payload, and are not counted.

Fitted codebooks come twice: fitted on the very sample they quantize ("self", an optimistic
figure) and fitted on a different sample of the same distribution ("held out": another seed
of the same generator for the built-in samples, or ``holdout`` if given; for other data without
``holdout``, two-fold cross-fitting: each half of the blocks is quantized with the codebook
fitted on the other half).
"""

from dataclasses import dataclass
import math
import re
import sys

import numpy as np

import golden
from golden.codebook import Codebook
from golden.outliers import OutlierFormat
from .demo import sample_activations, quantization_stats


__all__ = ["FLOAT_ELEMENTS", "RECORD_FORMATS", "CODEBOOK_BITS", "CODEBOOK_OUTLIERS",
           "Config", "SAMPLES", "student_t_sample", "bits_per_element", "configurations",
           "error_table", "tradeoff_table", "tradeoff_markdown", "pareto_front",
           "markdown_table", "section", "main"]


#: Float and integer elements compared with outliers.
FLOAT_ELEMENTS = ("e2m1", "int4", "e3m2", "e4m3")
#: Outlier record formats ``(D, Mo)``: a wide 1-4-7 record and a narrow 1-3-3 one.
RECORD_FORMATS = ((4, 7), (3, 3))
#: Codebook index widths ``N`` (element codes of ``N + 1`` bits).
CODEBOOK_BITS = (2, 3, 4)
#: Outlier counts tried with codebook elements, with the narrow record.
CODEBOOK_OUTLIERS = (0, 2)
#: Seeds of the built-in samples (the evaluated one and the one held-out codebooks fit on).
ACTIVATION_SEEDS = (2024, 7)
STUDENT_T_SEEDS = (3, 11)


def student_t_sample(shape=(64, 512), seed=STUDENT_T_SEEDS[0], df=3):
    """Heavy-tailed signed data: Student-t with ``df`` degrees of freedom (infinite variance
    for ``df <= 2``, infinite kurtosis for ``df <= 4``), as float32. Deterministic."""
    return np.random.default_rng(seed).standard_t(df, size=shape).astype(np.float32)


def bits_per_element(element_bits, block=32, outliers=None):
    """Storage bits per element of a block of ``block`` elements of ``element_bits`` bits with
    the outlier records ``outliers`` (an :class:`golden.OutlierFormat` or None): scale, codes,
    records (index and code) and the record count field, divided by ``block``."""
    block = golden.mx.check_block(block)
    bits = 8 + block * element_bits
    if outliers is not None and outliers.k:
        bits += outliers.k * outliers.record_bits(block)
        bits += math.ceil(math.log2(outliers.k + 1))
    return bits / block


@dataclass(frozen=True)
class Config:
    """One configuration: ``elem`` (format name) or ``codebook`` (``"uniform"``, ``"log"``,
    ``"fitted"``, ``"fitted-holdout"``) with ``n_bits``; ``outliers`` or None."""
    elem: str = None
    codebook: str = None
    n_bits: int = None
    outliers: OutlierFormat = None

    @property
    def k(self):
        return 0 if self.outliers is None else self.outliers.k

    @property
    def element_name(self):
        if self.codebook is None:
            return self.elem
        kind = {"fitted": "fitted (self)", "fitted-holdout": "fitted (held out)"}
        return f"{kind.get(self.codebook, self.codebook)} N={self.n_bits}"

    @property
    def record_name(self):
        if not self.k:
            return "-"
        return f"e{self.outliers.exp_bits}m{self.outliers.man_bits}"

    @property
    def name(self):
        if not self.k:
            return self.element_name
        return f"{self.element_name} + {self.k} x {self.record_name}"

    @property
    def element_bits(self):
        if self.codebook is not None:
            return self.n_bits + 1
        return golden.resolve_format(self.elem).bits


def configurations():
    """Every configuration of the table, in table order: each float element with no outliers
    and with K = 1..4 records of each of :data:`RECORD_FORMATS`; then each codebook (uniform,
    log, fitted on the sample, fitted on held-out data) and N in :data:`CODEBOOK_BITS` with
    K in :data:`CODEBOOK_OUTLIERS` (records 1-3-3)."""
    configs = []
    for elem in FLOAT_ELEMENTS:
        configs.append(Config(elem=elem))
        for exp_bits, man_bits in RECORD_FORMATS:
            for k in range(1, golden.outliers.MAX_OUTLIERS + 1):
                configs.append(Config(elem=elem, outliers=OutlierFormat(k, exp_bits, man_bits)))
    exp_bits, man_bits = RECORD_FORMATS[-1]
    for kind in ("uniform", "log", "fitted", "fitted-holdout"):
        for n_bits in CODEBOOK_BITS:
            for k in CODEBOOK_OUTLIERS:
                configs.append(Config(codebook=kind, n_bits=n_bits,
                                      outliers=OutlierFormat(k, exp_bits, man_bits) if k
                                      else None))
    return configs


def _block_rows(x, block):
    """``x`` as rows of ``block`` elements, the blocks the quantizer sees (padded with +0)."""
    return golden.mx._blocks(x, block).reshape(-1, block)


def _quantize(x, config, block, codebooks):
    outliers = config.outliers
    if config.codebook is None:
        return golden.quantize_mx(x, config.elem, block, outliers=outliers)
    fitted = codebooks[(config.codebook, config.n_bits)]
    if isinstance(fitted, Codebook):
        return golden.quantize_mx(x, block=block, outliers=outliers, codebook=fitted)
    # two-fold cross-fitting: fitted = (codebook for the first half of the blocks, for the rest)
    blocks = _block_rows(x, block)
    half = blocks.shape[0] // 2
    q = np.concatenate([
        golden.quantize_mx(blocks[:half], block=block, outliers=outliers, codebook=fitted[0]),
        golden.quantize_mx(blocks[half:], block=block, outliers=outliers, codebook=fitted[1]),
    ])
    padded = x.shape[:-1] + (-(-x.shape[-1] // block) * block,)
    return q.reshape(padded)[..., :x.shape[-1]]


def _codebooks(x, holdout, block):
    """The codebooks of the table: built-ins, fitted on ``x``, fitted on ``holdout`` (or a pair
    for two-fold cross-fitting when ``holdout`` is None)."""
    books = {}
    for n_bits in CODEBOOK_BITS:
        books[("uniform", n_bits)] = golden.codebook.uniform(n_bits)
        books[("log", n_bits)] = golden.codebook.log(n_bits)
        books[("fitted", n_bits)] = golden.fit_codebook(x, n_bits, block=block)
        if holdout is not None:
            books[("fitted-holdout", n_bits)] = golden.fit_codebook(holdout, n_bits, block=block)
        else:
            blocks = _block_rows(x, block)
            half = blocks.shape[0] // 2
            if half == 0:
                raise ValueError("Cross-fitting needs at least two blocks; give holdout=")
            books[("fitted-holdout", n_bits)] = (
                golden.fit_codebook(blocks[half:], n_bits, block=block),
                golden.fit_codebook(blocks[:half], n_bits, block=block))
    return books


def error_table(x=None, *, block=32, holdout=None):
    """Error and storage of every configuration (:func:`configurations`) on the sample ``x``.

    Parameters
    ----------
    x : array_like of float or None
        Blocks run along the last axis; None: the built-in activation sample.
    block : int
        Elements per block.
    holdout : array_like of float or None
        Data the "held out" codebooks are fitted on. None: for the built-in sample, the same
        generator with another seed; for other ``x``, two-fold cross-fitting over its blocks.

    Returns
    -------
    list of dict
        One per configuration, in the order of :func:`configurations`: ``name``, ``element``,
        ``K``, ``record``, ``bits/elem`` (exact), ``RMSE``, ``SQNR dB``. Deterministic (round
        to nearest even; fitting is deterministic).
    """
    block = golden.mx.check_block(block)
    if x is None:
        x = sample_activations(seed=ACTIVATION_SEEDS[0])
        if holdout is None:
            holdout = sample_activations(seed=ACTIVATION_SEEDS[1])
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("Input must have at least one axis")
    if not np.isfinite(x).all():
        raise ValueError("Input must be finite")
    codebooks = _codebooks(x, holdout, block)
    rows = []
    for config in configurations():
        q = _quantize(x, config, block, codebooks)
        rmse, sqnr = quantization_stats(x, q)
        rows.append({"name": config.name, "element": config.element_name, "K": config.k,
                     "record": config.record_name,
                     "bits/elem": bits_per_element(config.element_bits, block, config.outliers),
                     "RMSE": rmse, "SQNR dB": float(sqnr)})
    return rows


def pareto_front(rows, key="SQNR dB", bits="bits/elem"):
    """Indices of the rows no other row beats: none has at most as many bits and a higher
    ``key``, or fewer bits and as high a ``key``."""
    front = []
    for i, row in enumerate(rows):
        if not any((o[bits] <= row[bits] and o[key] > row[key])
                   or (o[bits] < row[bits] and o[key] >= row[key]) for o in rows):
            front.append(i)
    return front


#: The built-in samples of :func:`tradeoff_table`: label, generator, seeds.
SAMPLES = (("act", sample_activations, ACTIVATION_SEEDS),
           ("t3", student_t_sample, STUDENT_T_SEEDS))


def tradeoff_table(*, block=32, shape=(64, 512)):
    """:func:`error_table` on both built-in samples (:data:`SAMPLES`), side by side: ``name``,
    ``bits/elem``, then ``<label> SQNR dB``, ``<label> RMSE`` and ``<label> front`` (the row
    is on that sample's error/bits front, :func:`pareto_front`) per sample."""
    rows = None
    for label, make, (seed, holdout_seed) in SAMPLES:
        table = error_table(make(shape, seed), block=block, holdout=make(shape, holdout_seed))
        front = set(pareto_front(table))
        if rows is None:
            rows = [{"name": r["name"], "bits/elem": r["bits/elem"]} for r in table]
        for i, (row, r) in enumerate(zip(rows, table)):
            row[f"{label} SQNR dB"] = round(r["SQNR dB"], 2)
            row[f"{label} RMSE"] = float(f"{r['RMSE']:.4g}")
            row[f"{label} front"] = "*" if i in front else ""
    return rows


def _markdown_cell(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = repr(value)
        return text if len(text) <= 8 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, str) and re.fullmatch(r"(\*\*)?-?[0-9.]+(e-?[0-9]+)?(\*\*)?",
                                                   value) is not None


def markdown_table(rows, columns=None):
    """A Markdown table of ``rows`` (dicts): ``columns`` (keys, default: every key in order of
    first appearance) as headers; columns of numbers (or of numbers in bold) right-aligned."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    numeric = [all(_is_number(r[c]) for r in rows if c in r) and any(c in r for r in rows)
               for c in columns]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_markdown_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def section(*, quick):
    """For ``make bench`` (:data:`lowprec.bench.EXTRA_SECTIONS`): :func:`tradeoff_table`,
    on 16x512 samples when ``quick``."""
    shape = (16, 512) if quick else (64, 512)
    rows = tradeoff_table(shape=shape)
    return (f"Error versus bits (block 32, nearest even, {shape[0]}x{shape[1]} activation "
            f"and Student-t(3) samples; * = on the front)", rows)


def tradeoff_markdown(rows=None):
    """:func:`tradeoff_table` (or ``rows`` from it) as Markdown, SQNR figures on a sample's
    front in bold."""
    rows = tradeoff_table() if rows is None else rows
    shown = []
    for row in rows:
        out = {"configuration": row["name"], "bits/elem": row["bits/elem"]}
        for label, _, _ in SAMPLES:
            sqnr = f"{row[f'{label} SQNR dB']:.2f}"
            out[f"{label} SQNR dB"] = f"**{sqnr}**" if row[f"{label} front"] else sqnr
            out[f"{label} RMSE"] = row[f"{label} RMSE"]
        shown.append(out)
    return markdown_table(shown)


def main(argv=None):
    """Print :func:`tradeoff_table` as Markdown (``python -m lowprec.tradeoffs``)."""
    print(tradeoff_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
