"""The ``lowprec`` command line."""

import argparse
import sys
from pathlib import Path

import numpy as np


__all__ = ["main"]


class UsageError(Exception):
    """A command-line argument is wrong; the message says which and why."""


def _cores():
    from hdl import (MXQuantizer, MXDequantizer, OutlierExtractor, OutlierMerger,
                     NonUniformEncoder, NonUniformDecoder)
    return {
        "mx-quantizer":        MXQuantizer,
        "mx-dequantizer":      MXDequantizer,
        "outlier-extractor":   OutlierExtractor,
        "outlier-merger":      OutlierMerger,
        "nonuniform-encoder":  NonUniformEncoder,
        "nonuniform-decoder":  NonUniformDecoder,
    }


def _parse_outliers(text):
    """``K`` or ``K:D:MO`` (outliers per block, record exponent and mantissa bits)."""
    import golden
    parts = text.split(":")
    try:
        numbers = [int(part, 10) for part in parts]
    except ValueError:
        numbers = None
    if numbers is None or len(numbers) not in (1, 3):
        raise UsageError(f"Outliers must look like K or K:D:MO (e.g. 2 or 2:4:7), not {text!r}")
    if numbers[0] == 0:
        return None
    return golden.OutlierFormat(*numbers)


_CODEBOOK_KINDS = ("uniform", "log", "fit")


def _parse_codebook(text, samples=None):
    """``uniformN``, ``logN``, ``fitN`` (Lloyd-Max on ``samples``) or, for a core, ``N``
    (levels loaded at run time)."""
    import golden
    kind = text.rstrip("0123456789")
    digits = text[len(kind):]
    if not digits or kind not in _CODEBOOK_KINDS + ("",):
        raise UsageError(f"Codebook must look like uniformN, logN or fitN (N = 1..4 index "
                         f"bits), not {text!r}")
    n_bits = int(digits)
    if kind == "":
        return n_bits
    if kind == "fit":
        if samples is None:
            raise UsageError("A fitted codebook needs samples: use it with 'quantize'")
        return golden.fit_codebook(samples, n_bits)
    return getattr(golden, kind)(n_bits)


def _parse_params(pairs):
    params = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param must look like NAME=VALUE, not {pair!r}")
        name = name.replace("-", "_")
        if name == "outliers":
            value = _parse_outliers(text)
        elif name == "codebook":
            value = _parse_codebook(text) if text.lower() != "none" else None
        else:
            try:
                value = int(text, 0)
            except ValueError:
                value = {"true": True, "false": False, "none": None}.get(text.lower(), text)
        params[name] = value
    return params


def _load_array(path):
    path = Path(path)
    if not path.exists():
        raise UsageError(f"Input file {str(path)!r} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:
        raise UsageError(f"Input file {str(path)!r} is not a .npy array: {error}") from None
    if not isinstance(array, np.ndarray) or array.ndim == 0:
        raise UsageError(f"Input file {str(path)!r} must hold an array with at least one axis")
    return array


def cmd_quantize(args):
    import golden
    x = _load_array(args.input)
    if args.in_format is None:
        in_format = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(
            x.dtype.name, "fp32")
    else:
        in_format = args.in_format
    from sim.mx import cast_to, quantize_mx_rtl
    x = cast_to(x, in_format)
    outliers = _parse_outliers(args.outliers) if args.outliers else None
    codebook = _parse_codebook(args.codebook, x) if args.codebook else None
    elem = None if codebook is not None else args.elem
    encoded = golden.encode_blocks(x, elem, args.block, args.rounding, args.seed,
                                   outliers=outliers, codebook=codebook)
    if args.rtl:
        rtl = quantize_mx_rtl(x, elem=elem, block=args.block, rounding=args.rounding,
                              seed=args.seed, in_format=in_format, lanes=args.lanes,
                              codebook=codebook, outliers=outliers)
        same = all(np.array_equal(a, b) for a, b in zip(rtl, encoded))
        print(f"RTL == golden: {'yes' if same else 'NO'} "
              f"({encoded.scales.size} blocks, {x.size} elements)")
        if not same:
            return 1
    values = golden.decode_blocks(encoded, elem, args.block, outliers=outliers,
                                  codebook=codebook)[..., :x.shape[-1]]
    out = cast_to(values, in_format)
    np.save(args.output, out)
    if args.codes:
        extra = {} if codebook is None else {"levels": np.asarray(codebook.levels)}
        np.savez(args.codes, scales=encoded.scales, codes=encoded.codes,
                 outlier_index=encoded.outlier_index, outlier_codes=encoded.outlier_codes,
                 **extra)
    return 0


def cmd_verilog(args):
    from amaranth.back import verilog
    cores = _cores()
    if args.core not in cores:
        raise UsageError(f"Core must be one of {', '.join(cores)}, not {args.core!r}")
    params = _parse_params(args.param)
    try:
        component = cores[args.core](**params)
    except TypeError as error:
        raise UsageError(f"Bad parameter for {args.core}: {error}") from None
    text = verilog.convert(component, name=args.name)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def cmd_demo(args):
    from .demo import run_demo
    return run_demo(rtl=not args.no_rtl, simulator=args.simulator, lanes=args.lanes)


def cmd_bench(args, rest):
    from . import bench
    return bench.main(rest)


def build_parser():
    import golden
    from hdl.mx_layouts import IN_FORMATS
    parser = argparse.ArgumentParser(
        prog="lowprec",
        description="Bit-exact low-precision number formats: golden model, RTL cores, tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    q = commands.add_parser(
        "quantize", help="MX-quantize a .npy tensor along its last axis",
        description="Quantize IN.npy to an MX/BFP format along the last axis and write the "
                    "quantized values (in the input's float format) to OUT.npy. The last "
                    "axis is padded with zeros to a multiple of the block internally.")
    q.add_argument("input", metavar="IN.npy", help="input tensor (float32, float16 or bfloat16)")
    q.add_argument("-o", "--output", metavar="OUT.npy", required=True,
                   help="where to write the quantized values")
    q.add_argument("--elem", default="e4m3", choices=list(golden.FORMATS),
                   help="element format (default e4m3); MX formats: "
                        + ", ".join(golden.MX_ELEMENTS))
    q.add_argument("--block", type=int, default=32,
                   help="elements per shared scale, a power of two 2..64 (default 32)")
    q.add_argument("--rounding", default="nearest_even", choices=golden.ROUNDING_MODES,
                   help="element rounding (default nearest_even)")
    q.add_argument("--seed", type=int, default=0,
                   help="32-bit seed of stochastic rounding (default 0)")
    q.add_argument("--in-format", choices=IN_FORMATS, default=None,
                   help="float format of the elements (default: from the array's dtype; "
                        "float64 input is rounded to fp32 first)")
    q.add_argument("--outliers", metavar="K[:D:MO]",
                   help="keep the K (0..4) largest magnitudes of every block in records of "
                        "1-D-MO bits (default D=4, MO=7), e.g. --outliers 2 or 2:3:3")
    q.add_argument("--codebook", metavar="KINDN",
                   help="codebook elements instead of --elem: uniformN, logN or fitN "
                        "(Lloyd-Max on the input), N = 1..4 index bits, e.g. fit3")
    q.add_argument("--codes", metavar="CODES.npz",
                   help="also write the E8M0 scales, element codes, outlier indices and "
                        "records (and the codebook's levels)")
    q.add_argument("--rtl", action="store_true",
                   help="also run the MXQuantizer RTL in simulation and fail unless it "
                        "produces the same codes as the golden model")
    q.add_argument("--lanes", type=int, default=8,
                   help="elements per beat of the simulated core with --rtl (default 8)")
    q.set_defaults(func=cmd_quantize)

    v = commands.add_parser(
        "verilog", help="generate Verilog for a core",
        description="Elaborate a core with the given parameters and write Verilog. "
                    "Cores: mx-quantizer (in_format, elem, block, lanes, sr_bits, codebook, "
                    "outliers), mx-dequantizer (elem, block, out_format, lanes, codebook, "
                    "outliers), and the same with outliers or codebook required: "
                    "outlier-extractor, nonuniform-encoder (quantizer), outlier-merger, "
                    "nonuniform-decoder (dequantizer). codebook=uniformN|logN (fixed levels) "
                    "or N (levels loaded through cfg); outliers=K or K:D:MO.")
    v.add_argument("core", metavar="CORE",
                   help="mx-quantizer, mx-dequantizer, outlier-extractor, outlier-merger, "
                        "nonuniform-encoder or nonuniform-decoder")
    v.add_argument("--param", "-p", action="append", metavar="NAME=VALUE",
                   help="core parameter, e.g. -p elem=e4m3 -p block=32 (repeatable)")
    v.add_argument("--name", default="top", help="Verilog module name (default top)")
    v.add_argument("-o", "--output", metavar="FILE.v", required=True,
                   help="output file, or - for standard output")
    v.set_defaults(func=cmd_verilog)

    d = commands.add_parser(
        "demo", help="quantize the built-in activation sample to every MX format",
        description="Quantize a built-in ReLU-like activation sample (fixed seed) to each "
                    "MX format with the golden model and the RTL quantizer, and print "
                    "bits/element, compression, RMSE, SQNR and RTL == golden.")
    d.add_argument("--no-rtl", action="store_true", help="golden model only")
    d.add_argument("--simulator", choices=("icarus", "verilator"), default=None,
                   help="simulator for the RTL (default icarus, or $LOWPREC_SIM)")
    d.add_argument("--lanes", type=int, default=8, help="elements per beat (default 8)")
    d.set_defaults(func=cmd_demo)

    commands.add_parser(
        "bench", add_help=False, help="synthesis, place-and-route and speed figures",
        description="See 'lowprec bench --help'.")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        return cmd_bench(None, argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError, TypeError) as error:
        print(f"lowprec {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
