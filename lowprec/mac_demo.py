"""The shift-MAC part of ``lowprec demo``: a GEMM tile of INT4 activations and FP4 gradients
with every accumulator choice, and the RTL array checked against the golden model."""

import numpy as np

import golden
from golden import mac


__all__ = ["mac_operands", "mac_configs", "run_mac_demo"]


def mac_operands(x, *, units=8, length=4096, vectors=16, seed=7):
    """The demo's operands from activations ``x`` (reshaped to rows of ``length``): ``units``
    rows of ``length`` INT4 codes (a scale per row), and ``vectors`` FP4 gradient vectors
    (normal times a log-normal scale per vector), each scaled by a power of two so that its
    largest element lands near the top level ``4^3``. Returns ``(a, g, a_scale, g_scale,
    gradients)``, the scales per row and per vector."""
    activations = np.asarray(x, np.float64).reshape(-1, length)[:units]
    pairs = [mac.quantize_int4(row) for row in activations]        # a scale per row
    a = np.stack([codes for codes, _ in pairs])
    a_scale = np.array([scale for _, scale in pairs])
    rs = np.random.default_rng(seed)
    gradients = rs.standard_normal((vectors, length)) * np.exp(rs.normal(0, 1, (vectors, 1)))
    g_scale = 2.0 ** np.ceil(np.log2(np.abs(gradients).max(axis=1) / 64))   # per vector
    g = np.stack([mac.quantize_fp4(v, scale=s) for v, s in zip(gradients, g_scale)])
    return a, g, a_scale, g_scale, gradients


def mac_configs(lanes):
    """``(label, options)`` of the accumulators shown: exact, and fp16/dlfloat16 chunk
    accumulators with one beat (``lanes`` products) or 64 products per chunk."""
    return [
        ("exact -> fp16", dict(acc="exact")),
        (f"fp16 acc, chunk {lanes}", dict(acc="fp16", chunk=lanes)),
        ("fp16 acc, chunk 64", dict(acc="fp16", chunk=64)),
        ("dlfloat16 acc, chunk 64", dict(acc="dlfloat16", chunk=64)),
        ("fp16 acc, chunk 64, SR", dict(acc="fp16", chunk=64, rounding="stochastic", seed=11)),
    ]


def _relative_rms(values, reference):
    scale = np.sqrt(np.mean(reference ** 2))
    return float(np.sqrt(np.mean((values - reference) ** 2)) / scale) if scale else 0.0


def run_mac_demo(x, *, rtl=True, simulator=None, units=4, lanes=8, rtl_vectors=2):
    """Print the tile's error against float64 for each accumulator; with ``rtl``, run the
    first ``rtl_vectors`` gradient vectors of every configuration through one
    :class:`hdl.ShiftMACArray` per accumulator in simulation. Returns the number of
    configurations whose RTL results differ from the golden model's."""
    a, g, a_scale, g_scale, gradients = mac_operands(x, units=units)
    activations = np.asarray(x, np.float64).reshape(-1, a.shape[1])[:units]
    # the tile: every gradient vector against every activation row, units rows in lock step
    a_tile = np.broadcast_to(a, (g.shape[0],) + a.shape)
    g_tile = g[:, None, :]
    dequantized = (a.astype(np.float64)[None] * mac.dequantize_fp4(g)[:, None, :]).sum(-1)
    unquantized = (activations[None] * gradients[:, None, :]).sum(-1)
    print()
    print(f"4-bit shift MAC: {units} INT4 activation rows x {g.shape[0]} FP4 (radix-4) gradient "
          f"vectors of {a.shape[1]}, fp16 results"
          + (f"; RTL ShiftMACArray ({units} units x {lanes} lanes) on the first {rtl_vectors} "
             f"vectors" if rtl else ""))
    configs = mac_configs(lanes)
    width = max(len(label) for label, _ in configs) + 2
    header = f"{'accumulator':<{width}}{'vs exact sum':>14}{'vs fp64 inputs':>16}"
    header += f"{'RTL == golden':>15}" if rtl else ""
    print(header)
    print("-" * len(header))
    failures = 0
    for label, options in configs:
        codes = mac.shift_mac(a_tile, g_tile, units=units, **options)
        values = golden.decode_float(codes, "fp16")
        line = (f"{label:<{width}}{_relative_rms(values, dequantized):>14.2e}"
                f"{_relative_rms(values * a_scale[None] * g_scale[:, None], unquantized):>16.2e}")
        if rtl:
            from sim.mac import mac_rtl
            part = slice(0, rtl_vectors)
            frame = dict(a=a_tile[part], g=g[part],
                         rounding=options.get("rounding", "nearest_even"),
                         seed=options.get("seed", 0))
            build = {k: v for k, v in options.items() if k in ("acc", "chunk")}
            result = mac_rtl([frame], units=units, lanes=lanes, simulator=simulator,
                             check=False, **build)
            expected = mac.shift_mac(a_tile[part], g_tile[part], units=units, **options)
            same = np.array_equal(np.asarray(result.values[0]).reshape(expected.shape),
                                  expected)
            failures += not same
            line += f"{'yes' if same else 'NO':>15}"
        print(line, flush=True)
    return failures
