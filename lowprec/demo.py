"""``lowprec demo`` / ``make demo``: every MX format on a built-in activation sample."""


import numpy as np

import golden


__all__ = ["sample_activations", "quantization_stats", "run_demo"]


def sample_activations(shape=(64, 512), seed=2024):
    """ReLU-like activations: ``max(0, N(0,1))`` per element times a log-normal scale per row
    (channel), with a few large outliers, as float32. Deterministic for a given seed."""
    rs = np.random.default_rng(seed)
    rows, cols = shape
    scale = np.exp(rs.normal(0.0, 1.0, size=(rows, 1)))
    x = np.maximum(0.0, rs.standard_normal(shape)) * scale
    outliers = rs.random(shape) < 1e-3
    x = np.where(outliers, x * 30.0, x)
    return x.astype(np.float32)


def quantization_stats(x, q):
    """RMSE and SQNR (dB) of ``q`` against ``x``."""
    x = np.asarray(x, np.float64)
    error = np.asarray(q, np.float64) - x
    rmse = float(np.sqrt(np.mean(error ** 2)))
    noise = float(np.sum(error ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(float(np.sum(x ** 2)) / noise)
    return rmse, sqnr


def run_demo(*, rtl=True, simulator=None, lanes=8, block=32, elems=golden.MX_ELEMENTS,
             extras=True):
    """Quantize the sample to every format of ``elems`` and, with ``extras``, to a few
    outlier and codebook configurations; with ``rtl`` also by the RTL quantizer in
    simulation, failing (return 1) unless it produces the golden model's codes."""
    from .tradeoffs import bits_per_element
    x = sample_activations()
    print(f"Built-in activation sample: {x.shape[0]}x{x.shape[1]} float32, "
          f"{np.mean(x == 0) * 100:.0f}% zeros, max {x.max():.1f}")
    print(f"MX/BFP block {block}, round to nearest even"
          + (f", RTL MXQuantizer with {lanes} lanes on {simulator or 'icarus'}" if rtl else ""))
    failures = 0
    configs = [(golden.resolve_format(elem).name, elem, None, None) for elem in elems]
    if extras:
        fitted = golden.fit_codebook(x, 3)
        configs += [
            ("e2m1 +2 outliers (1-3-3)", "e2m1", None, golden.OutlierFormat(2, 3, 3)),
            ("e3m2 +2 outliers (1-4-7)", "e3m2", None, golden.OutlierFormat(2, 4, 7)),
            ("codebook fitted N=3", None, fitted, None),
            ("codebook fitted N=3 +2 outliers", None, fitted, golden.OutlierFormat(2, 3, 3)),
        ]
    width = max(len(config[0]) for config in configs) + 2
    header = f"{'format':<{width}}{'bits/elem':>10}{'vs fp32':>9}{'RMSE':>11}{'SQNR dB':>9}"
    header += f"{'RTL == golden':>15}" if rtl else ""
    print(header)
    print("-" * len(header))
    for label, elem, codebook, outliers in configs:
        encoded = golden.encode_blocks(x, elem, block, outliers=outliers, codebook=codebook)
        q = golden.decode_blocks(encoded, elem, block, outliers=outliers,
                                 codebook=codebook)[..., :x.shape[-1]]
        element_bits = codebook.bits if codebook is not None else \
            golden.resolve_format(elem).bits
        bits = bits_per_element(element_bits, block, outliers)
        rmse, sqnr = quantization_stats(x, q)
        line = f"{label:<{width}}{bits:>10.2f}{32 / bits:>8.2f}x{rmse:>11.3e}{sqnr:>9.2f}"
        if rtl:
            from sim.mx import quantize_mx_rtl
            rtl_encoded = quantize_mx_rtl(x, elem=elem, block=block, lanes=lanes,
                                          simulator=simulator, codebook=codebook,
                                          outliers=outliers)
            same = all(np.array_equal(a, b) for a, b in zip(rtl_encoded, encoded))
            failures += not same
            line += f"{'yes' if same else 'NO':>15}"
        print(line, flush=True)
    if failures:
        print(f"{failures} format(s) differ between RTL and golden model")
        return 1
    return 0
