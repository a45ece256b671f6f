"""``lowprec demo`` / ``make demo``: every MX format on a built-in activation sample."""

import time

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


def run_demo(*, rtl=True, simulator=None, lanes=8, block=32, elems=golden.MX_ELEMENTS):
    x = sample_activations()
    print(f"Built-in activation sample: {x.shape[0]}x{x.shape[1]} float32, "
          f"{np.mean(x == 0) * 100:.0f}% zeros, max {x.max():.1f}")
    print(f"MX block {block}, round to nearest even"
          + (f", RTL MXQuantizer with {lanes} lanes on {simulator or 'icarus'}" if rtl else ""))
    header = f"{'format':<8}{'bits/elem':>10}{'vs fp32':>9}{'RMSE':>11}{'SQNR dB':>9}"
    header += f"{'RTL == golden':>15}" if rtl else ""
    print(header)
    print("-" * len(header))
    failures = 0
    for elem in elems:
        fmt = golden.resolve_format(elem)
        start = time.perf_counter()
        scales, codes = golden.encode_mx(x, elem, block)
        q = golden.decode_mx(scales, codes, elem, block)[..., :x.shape[-1]]
        bits = fmt.bits + 8 / block
        rmse, sqnr = quantization_stats(x, q)
        line = f"{fmt.name:<8}{bits:>10.2f}{32 / bits:>8.2f}x{rmse:>11.3e}{sqnr:>9.2f}"
        if rtl:
            from sim.mx import quantize_mx_rtl
            rtl_scales, rtl_codes = quantize_mx_rtl(x, elem=elem, block=block, lanes=lanes,
                                                    simulator=simulator)
            same = np.array_equal(rtl_scales, scales) and np.array_equal(rtl_codes, codes)
            failures += not same
            line += f"{'yes' if same else 'NO':>15}"
        print(line, flush=True)
    if failures:
        print(f"{failures} format(s) differ between RTL and golden model")
        return 1
    return 0
