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
                     NonUniformEncoder, NonUniformDecoder, ShiftMACUnit, MultiplierMACUnit,
                     ShiftMACArray, MultiplierMACArray)
    return {
        "mx-quantizer":        MXQuantizer,
        "mx-dequantizer":      MXDequantizer,
        "outlier-extractor":   OutlierExtractor,
        "outlier-merger":      OutlierMerger,
        "nonuniform-encoder":  NonUniformEncoder,
        "nonuniform-decoder":  NonUniformDecoder,
        "shift-mac-unit":      ShiftMACUnit,
        "multiplier-mac-unit": MultiplierMACUnit,
        "shift-mac-array":     ShiftMACArray,
        "multiplier-mac-array": MultiplierMACArray,
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
    if array.dtype.kind == "V" and array.dtype.itemsize == 2 and array.dtype.fields is None:
        # NumPy saves an ml_dtypes.bfloat16 array as raw 2-byte records ("|V2")
        import ml_dtypes
        array = array.view(ml_dtypes.bfloat16)
    return array


def cmd_quantize(args):
    import golden
    from sim.mx import cast_to, quantize_mx_rtl
    x, in_format = _input_floats(args.input, args.in_format)
    elem, outliers, codebook = _format_options(args, x)
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


def _add_format_arguments(parser, elements):
    import golden
    parser.add_argument("--elem", default="e4m3", choices=list(elements),
                        help="element format (default e4m3); MX formats: "
                             + ", ".join(golden.MX_ELEMENTS))
    parser.add_argument("--block", type=int, default=32,
                        help="elements per shared scale, a power of two 2..64 (default 32)")
    parser.add_argument("--rounding", default="nearest_even", choices=golden.ROUNDING_MODES,
                        help="element rounding (default nearest_even)")
    parser.add_argument("--seed", type=int, default=0,
                        help="32-bit seed of stochastic rounding (default 0)")
    parser.add_argument("--outliers", metavar="K[:D:MO]",
                        help="keep the K (0..4) largest magnitudes of every block in records "
                             "of 1-D-MO bits (default D=4, MO=7), e.g. --outliers 2 or 2:3:3")
    parser.add_argument("--codebook", metavar="KINDN",
                        help="codebook elements instead of --elem: uniformN, logN or fitN "
                             "(Lloyd-Max on the input), N = 1..4 index bits, e.g. fit3")


def _add_codec_arguments(parser):
    parser.add_argument("--zero-mode", default="zvc", choices=("none", "zvc", "rle"),
                        help="zero compression: none, zvc (non-zero mask per block) or rle "
                             "(zero-run tokens) (default zvc)")
    parser.add_argument("--word-bits", type=int, default=32, choices=(32, 64),
                        help="memory word width of the frame (default 32)")


def _add_rtl_arguments(parser, core, same):
    parser.add_argument("--rtl", action="store_true",
                        help=f"also run the {core} RTL in simulation and fail unless it "
                             f"produces {same} as the golden model")
    parser.add_argument("--lanes", type=int, default=4,
                        help="elements per beat of the simulated core with --rtl (default 4)")


def _input_floats(path, in_format=None):
    """The array of ``path`` as ``in_format`` (default: from its dtype; float64 is rounded to
    fp32) and that format's name."""
    from sim.mx import cast_to
    x = _load_array(path)
    if in_format is None:
        in_format = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(
            x.dtype.name, "fp32")
    return cast_to(x, in_format), in_format


def _format_options(args, x):
    """``(elem, outliers, codebook)`` of the format arguments (a fitted codebook fits ``x``)."""
    outliers = _parse_outliers(args.outliers) if args.outliers else None
    codebook = _parse_codebook(args.codebook, x) if args.codebook else None
    return (None if codebook is not None else args.elem), outliers, codebook


def cmd_compress(args):
    import golden
    x, in_format = _input_floats(args.input)
    elem, outliers, codebook = _format_options(args, x)
    config = golden.CompressionConfig(
        elem=elem, block=args.block,
        rounding=args.rounding, seed=args.seed, outliers=outliers, codebook=codebook,
        zero_mode=args.zero_mode, word_bits=args.word_bits)
    frame = golden.compress(x, config)
    if args.rtl:
        from sim.compress import compress_rtl
        _check_rtl_lanes(args.lanes, args.block)
        rtl, = compress_rtl([(x, config)], check=False, in_format=in_format,
                            elems=(elem if codebook is None else codebook,), block=args.block,
                            lanes=args.lanes, sr_bits=config.sr_bits, outliers=outliers,
                            word_bits=args.word_bits, max_ndim=max(4, x.ndim))
        same = rtl == frame
        print(f"RTL == golden: {'yes' if same else 'NO'} ({len(frame)} bytes, "
              f"CompressionEngine with {args.lanes} lanes)")
        if not same:
            return 1
    Path(args.output).write_bytes(frame)
    print(f"{x.size} elements -> {len(frame)} bytes "
          f"({8 * len(frame) / max(x.size, 1):.2f} bits/element, "
          f"{4 * x.size / len(frame):.2f}x vs fp32)")
    return 0


def _check_rtl_lanes(lanes, block):
    if lanes < 1 or lanes & (lanes - 1) or lanes > block:
        raise UsageError(f"--lanes must be a power of two from 1 to the block size {block}, "
                         f"not {lanes}")


def cmd_decompress(args):
    import golden
    path = Path(args.input)
    if not path.exists():
        raise UsageError(f"Input file {str(path)!r} does not exist")
    frame = path.read_bytes()
    values = golden.decompress(frame)
    if args.rtl:
        from sim.decompress import decompress_rtl
        config, shape, _ = golden.decompress_blocks(frame)
        _check_rtl_lanes(args.lanes, config.block)
        # The engine's check compares every element with the golden model (fp32 output)
        # and fails the run otherwise.
        try:
            (_, status), = decompress_rtl(
                [frame], out_format="fp32", lanes=args.lanes,
                elems=(config.elem if config.codebook is None else config.codebook,),
                block=config.block, outliers=config.outliers, word_bits=config.word_bits,
                max_ndim=max(4, len(shape)))
            same = status["code"] == "OK"
        except AssertionError as error:
            print(f"RTL decoder: {str(error).splitlines()[0]}")
            same = False
        print(f"RTL == golden: {'yes' if same else 'NO'} ({values.size} elements, "
              f"DecompressionEngine with {args.lanes} lanes)")
        if not same:
            return 1
    np.save(args.output, values.astype(args.dtype))
    return 0


def cmd_report(args):
    import golden
    x, _ = _input_floats(args.input)
    header = (f"{'format':<34}{'bits/elem':>10}{'vs fp32':>9}{'vs bf16':>9}{'SQNR dB':>9}"
              f"{'entropy':>9}{'overhead':>10}")
    print(f"{x.size} elements, {np.mean(x == 0) * 100:.0f}% zeros; block {args.block}, "
          f"zero mode {args.zero_mode}, {args.word_bits}-bit words; entropy: order-0 bound "
          f"of the quantized symbols, bits/element")
    print(header)
    print("-" * len(header))
    from .compression import report_presets
    for label, options in report_presets(x, args.block):
        config = golden.CompressionConfig(block=args.block, zero_mode=args.zero_mode,
                                          word_bits=args.word_bits, **options)
        report = golden.compression_report(x, config)
        print(f"{label:<34}{report['bits_per_element']:>10.2f}{report['ratio_fp32']:>8.2f}x"
              f"{report['ratio_bf16']:>8.2f}x{report['sqnr_db']:>9.2f}"
              f"{report['entropy_bits_per_element']:>9.2f}"
              f"{report['packing_overhead'] * 100:>9.0f}%")
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
    _add_format_arguments(q, golden.FORMATS)
    q.add_argument("--in-format", choices=IN_FORMATS, default=None,
                   help="float format of the elements (default: from the array's dtype; "
                        "float64 input is rounded to fp32 first)")
    q.add_argument("--codes", metavar="CODES.npz",
                   help="also write the E8M0 scales, element codes, outlier indices and "
                        "records (and the codebook's levels)")
    q.add_argument("--rtl", action="store_true",
                   help="also run the MXQuantizer RTL in simulation and fail unless it "
                        "produces the same codes as the golden model")
    q.add_argument("--lanes", type=int, default=8,
                   help="elements per beat of the simulated core with --rtl (default 8)")
    q.set_defaults(func=cmd_quantize)

    c = commands.add_parser(
        "compress", help="compress a .npy tensor into a self-describing frame",
        description="Quantize IN.npy along its last axis (as 'quantize'), zero-compress and "
                    "pack it into a frame of memory words with a header and a CRC-32 "
                    "(docs/codec.md), and write the frame's bytes to OUT.bin.")
    c.add_argument("input", metavar="IN.npy", help="input tensor (float32, float16 or bfloat16)")
    c.add_argument("-o", "--output", metavar="OUT.bin", required=True,
                   help="where to write the frame")
    _add_format_arguments(c, golden.ELEMENT_IDS)
    _add_codec_arguments(c)
    _add_rtl_arguments(c, "CompressionEngine", "the same frame bytes")
    c.set_defaults(func=cmd_compress)

    dc = commands.add_parser(
        "decompress", help="decompress a frame back into a .npy tensor",
        description="Read a frame written by 'compress' (no other information needed), check "
                    "its CRC and layout, and write the quantized values to OUT.npy. A "
                    "malformed frame is an error (exit 2) that says what is wrong and where.")
    dc.add_argument("input", metavar="IN.bin", help="the frame")
    dc.add_argument("-o", "--output", metavar="OUT.npy", required=True,
                    help="where to write the values")
    dc.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                    help="dtype of the written values (default float32, which holds every "
                         "value quantized from float32/16 input exactly)")
    _add_rtl_arguments(dc, "DecompressionEngine", "the same values")
    dc.set_defaults(func=cmd_decompress)

    r = commands.add_parser(
        "report", help="compression ratio, error and entropy bound over formats",
        description="Compress IN.npy with each preset format (MX elements, outliers, "
                    "codebooks) and print bits per element, ratio against fp32 and bf16, "
                    "SQNR and the order-0 entropy bound of the quantized symbols.")
    r.add_argument("input", metavar="IN.npy", help="input tensor (float32, float16 or bfloat16)")
    r.add_argument("--block", type=int, default=32,
                   help="elements per shared scale, a power of two 2..64 (default 32)")
    _add_codec_arguments(r)
    r.set_defaults(func=cmd_report)


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

    from .board_cli import add_board_commands
    add_board_commands(commands)

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
