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
    if extras:
        from .mac_demo import run_mac_demo
        failures += run_compression_demo(x, rtl=rtl, simulator=simulator, block=block)
        failures += run_mac_demo(x, rtl=rtl, simulator=simulator)
    if failures:
        print(f"{failures} check(s) differ between RTL and golden model")
        return 1
    return 0


def run_compression_demo(x, *, rtl=True, simulator=None, block=32, lanes=4, rtl_rows=8):
    """Compress ``x`` into frames (``docs/codec.md``) with a few formats and zero modes and
    print the sizes against fp32 and the order-0 entropy bound. With ``rtl``, the first
    ``rtl_rows`` rows go through one :class:`hdl.CompressionEngine` (the format changing
    from frame to frame through its descriptor) and one :class:`hdl.DecompressionEngine`;
    returns the number of frames whose RTL bytes or values differ from the golden model's."""
    fitted = golden.fit_codebook(x, 3, block=block)
    outliers = golden.OutlierFormat(2, 3, 3)
    no_outliers = golden.OutlierFormat(0, 3, 3)     # same D, Mo: one engine build for all
    presets = [
        ("e4m3, zvc", dict(elem="e4m3", zero_mode="zvc", outliers=no_outliers)),
        ("e2m1 +2 outliers, zvc", dict(elem="e2m1", zero_mode="zvc", outliers=outliers)),
        ("e2m1 +2 outliers, rle", dict(elem="e2m1", zero_mode="rle", outliers=outliers)),
        ("codebook fitted N=3, zvc", dict(elem=None, codebook=fitted, zero_mode="zvc",
                                          outliers=no_outliers)),
        ("e4m3, none", dict(elem="e4m3", zero_mode="none", outliers=no_outliers)),
    ]
    configs = [(label, golden.CompressionConfig(block=block, **options))
               for label, options in presets]
    print()
    print(f"Activation compression: frames of docs/codec.md ({x.size} elements, 32-bit words)"
          + (f"; RTL engines ({lanes} lanes) on the first {rtl_rows} rows" if rtl else ""))
    width = max(len(label) for label, _ in configs) + 2
    header = (f"{'format':<{width}}{'bytes':>9}{'bits/elem':>10}{'vs fp32':>9}{'SQNR dB':>9}"
              f"{'bound':>7}{'over':>6}")
    header += f"{'compress':>10}{'decompress':>12}" if rtl else ""
    print(header)
    print("-" * len(header))
    if rtl:
        from sim.compress import compress_rtl
        from sim.decompress import decompress_rtl
        part = x[:rtl_rows]
        build = dict(elems=("e4m3", "e2m1", fitted), block=block, lanes=lanes,
                     outliers=outliers, word_bits=32)
        frames = compress_rtl([(part, config) for _, config in configs], check=False,
                              in_format="fp32", simulator=simulator, **build)
        decoded = decompress_rtl(frames, out_format="fp32", simulator=simulator, check=False,
                                 **build)
    failures = 0
    for n, (label, config) in enumerate(configs):
        report = golden.compression_report(x, config)
        line = (f"{label:<{width}}{report['frame_bytes']:>9}{report['bits_per_element']:>10.2f}"
                f"{report['ratio_fp32']:>8.2f}x{report['sqnr_db']:>9.2f}"
                f"{report['entropy_bits_per_element']:>7.2f}"
                f"{report['packing_overhead'] * 100:>5.0f}%")
        if rtl:
            same_bytes = frames[n] == golden.compress(part, config)
            bits, status = decoded[n]
            expected = golden.quantize_mx(part, **config.quantize_options()).astype(np.float32)
            same_values = (status["code"] == "OK" and bits is not None and np.array_equal(
                np.asarray(bits).astype(np.uint32).view(np.float32)[..., :part.shape[-1]],
                expected))
            failures += (not same_bytes) + (not same_values)
            line += f"{'yes' if same_bytes else 'NO':>10}{'yes' if same_values else 'NO':>12}"
        print(line, flush=True)
    print("bound: the order-0 entropy bound of the stored symbols (bits/element); over: the "
          "packed size above it (docs/codec.md)")
    return failures
