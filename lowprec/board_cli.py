"""``lowprec board run|info`` and ``lowprec build``: tensors through a board (or its simulation)
and bitstreams for the boards of :data:`boards.tops.TOPS`."""

import sys
import time
from pathlib import Path

import numpy as np


__all__ = ["add_board_commands"]


class BoardUsageError(ValueError):
    """A board command's argument is wrong."""


#: ``--config`` keys of each operation and their parsers.
_CONFIG_KEYS = {
    "compress": {"elem": str, "rounding": str, "seed": int, "zero_mode": str},
    "decompress": {},
    "mac": {"rounding": str, "phase": int, "seed": int},
}


def parse_config(text, op):
    """``KEY=VALUE[,KEY=VALUE...]`` as a dict of the keys ``op`` takes."""
    keys = _CONFIG_KEYS[op]
    options = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in keys:
            allowed = ", ".join(keys) or "none"
            raise BoardUsageError(f"--config for {op} takes KEY=VALUE items with keys "
                                  f"{allowed}, not {item!r}")
        try:
            options[name] = keys[name](value.strip())
        except ValueError:
            raise BoardUsageError(f"--config {name} must be an integer, not {value!r}") \
                from None
    return options


def _operation(args):
    if args.op:
        return args.op
    suffix = Path(args.input).suffix.lower()
    ops = {".npy": "compress", ".bin": "decompress", ".npz": "mac"}
    if suffix not in ops:
        raise BoardUsageError(f"Cannot tell the operation from {args.input!r}: give --op, or "
                              f"an .npy tensor (compress), a .bin frame (decompress) or an "
                              f".npz with a and g codes (mac)")
    return ops[suffix]


def _top_config(args):
    from boards.tops import top_config
    config = top_config(args.board)
    if getattr(args, "sim", False) and args.sim_divisor:
        if args.sim_divisor < 4:
            raise BoardUsageError(f"--sim-divisor must be at least 4, not {args.sim_divisor}")
        config = config.replace(baud=config.clock_hz // args.sim_divisor)
        if config.divisor != args.sim_divisor:
            raise BoardUsageError(f"--sim-divisor must divide the clock "
                                  f"({config.clock_hz} Hz), not {args.sim_divisor}")
    return config


class _Connection:
    """The link to a board on a serial port, or to its simulation (``--sim``)."""

    def __init__(self, args, config):
        self.args, self.config = args, config
        self.sim = None

    def __enter__(self):
        from boards.link import Link, open_serial
        if self.args.sim:
            from sim.board import BoardSimulation
            self.sim = BoardSimulation(self.config).__enter__()
            url, timeout = self.sim.url, 600.0
        else:
            if not self.args.port:
                raise BoardUsageError("Give --port (the board's serial device) or --sim")
            url, timeout = self.args.port, self.args.timeout
        self.serial = open_serial(url, self.config.baud, timeout=timeout)
        self.link = Link(self.serial, timeout=timeout, baud=self.config.baud)
        return self

    def __exit__(self, *exc):
        self.serial.close()
        if self.sim is not None:
            self.sim.__exit__(*exc)
        return False


def _progress_bar(enabled):
    """A progress callback drawing a tqdm bar on stderr, or None."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm
    bars = {}

    def progress(what, done, total):
        bar = bars.get(what)
        if bar is None:
            bar = bars[what] = tqdm(total=total, unit=f" {what}", file=sys.stderr,
                                    leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)

    def close():
        for bar in bars.values():
            bar.close()
    return progress, close


def cmd_board_run(args):
    import golden
    from boards.host import BoardClient
    op = _operation(args)
    options = parse_config(args.config, op)
    config = _top_config(args)
    path = Path(args.input)
    if not path.exists():
        raise BoardUsageError(f"Input file {str(path)!r} does not exist")
    progress, close_bar = _progress_bar(not args.no_progress and sys.stderr.isatty())
    with _Connection(args, config) as connection:
        client = BoardClient(connection.link, config, progress=progress)
        start = time.monotonic()
        sim_start = connection.sim.cycles() if connection.sim else None
        try:
            if op == "compress":
                from lowprec.cli import _load_array
                x = _load_array(path).astype(np.float32)
                frame = client.compress(x, golden.CompressionConfig(**options),
                                        check=not args.no_check)
                Path(args.output).write_bytes(frame)
                elements, summary = x.size, f"{x.size} elements -> {len(frame)} bytes"
            elif op == "decompress":
                result = client.decompress(path.read_bytes(), check=not args.no_check)
                if result.code != "OK":
                    print(f"board: frame rejected: {result.code} at word {result.offset}",
                          file=sys.stderr)
                    return 1
                np.save(args.output, result.values)
                elements = result.values.size
                summary = f"{path.stat().st_size} bytes -> {elements} elements {result.shape}"
            else:
                with np.load(path) as data:
                    if "a" not in data or "g" not in data:
                        raise BoardUsageError(f"{str(path)!r} must hold arrays 'a' (INT4 codes, "
                                              f"T x P x n) and 'g' (FP4 codes, T x n)")
                    a, g = data["a"], data["g"]
                values = client.mac(a, g, check=not args.no_check, **options)
                np.save(args.output, values.astype(np.uint16))
                elements = a.size
                summary = f"{g.shape[0]} dot products of {g.shape[1]} x {a.shape[1]} -> " \
                          f"{values.size} results"
        finally:
            close_bar()
        seconds = time.monotonic() - start
        where = "simulated board" if connection.sim else args.port
        print(f"{op} on {config.name} ({where}): {summary}")
        if connection.sim:
            from boards.tops import top_config
            baud = top_config(args.board).baud   # a rate per bit time holds at any divisor
            bit_times = (connection.sim.cycles() - sim_start) / config.divisor
            rate = elements / (bit_times / baud)
            print(f"  {bit_times:.0f} bit times: {rate:,.0f} elements/s at the board's "
                  f"{baud:,} baud ({seconds:.1f} s of simulation)")
        else:
            print(f"  {seconds:.2f} s: {elements / seconds:,.0f} elements/s")
        print("  golden check: " + ("skipped" if args.no_check else "identical"))
        print(f"  wrote {args.output}")
    return 0


def cmd_board_info(args):
    from boards.host import BoardClient
    config = _top_config(args)
    with _Connection(args, config) as connection:
        client = BoardClient(connection.link, config)
        info = client.info
        print(f"board {config.name}: build {info.build_id:08x} (matches), "
              f"{info.clock_hz / 1e6:g} MHz, {info.baud:,} baud, "
              f"payload {info.max_payload} bytes")
        for name, port in zip(client.top.port_names, info.ports):
            print(f"  port {name:<18} {port.direction:<6} {port.record_bytes} bytes/record")
        for name, value in client.status().items():
            print(f"  {name:<20} {value}")
    return 0


def cmd_board_throughput(args):
    """Measure each operation of the top over the simulated UART and compare it with the
    on-chip engines' rate at the clock frequency."""
    import golden
    from boards.host import BoardClient
    from sim.stimulus import float_blocks
    if not args.sim:
        raise BoardUsageError("throughput runs on the simulated board: give --sim")
    from boards.tops import top_config
    config = _top_config(args)
    baud = top_config(args.board).baud          # a rate per bit time holds at any divisor
    rng = np.random.default_rng(0)
    rows = []
    with _Connection(args, config) as connection:
        client = BoardClient(connection.link, config)
        sim, top = connection.sim, client.top

        def measure(what, count, on_chip, job):
            start = sim.cycles()
            job()
            bits = (sim.cycles() - start) / config.divisor
            rows.append((what, count, count / (bits / baud), on_chip))

        if top.compress is not None:
            x = float_blocks(args.elements // 32, 32, "bf16", "e4m3", rng).reshape(
                -1, 512).astype(np.float32)
            cfg = golden.CompressionConfig(elem="e4m3", zero_mode="zvc")
            frame = []
            measure("compress (elements/s)", x.size, config.clock_hz * top.compress.lanes,
                    lambda: frame.append(client.compress(x, cfg)))
            measure("decompress (elements/s)", x.size,
                    config.clock_hz * config.params("decompress").get("lanes", 1),
                    lambda: client.decompress(frame[0]))
        if top.mac is not None:
            p = config.params("mac")
            n = 128
            T = max(1, args.elements // (p["units"] * n))
            a = rng.integers(-8, 8, (T, p["units"], n))
            g = rng.integers(0, 16, (T, n))
            measure("mac (products/s)", a.size, config.clock_hz * p["units"] * p["lanes"],
                    lambda: client.mac(a, g))
    print(f"{config.name}: {baud:,} baud, {config.clock_hz / 1e6:g} MHz "
          f"(simulated with {config.divisor} cycles per bit)")
    print(f"  {'operation':<26}{'count':>8}{'over UART':>14}{'on chip':>16}{'limit':>7}")
    for what, count, host, chip in rows:
        print(f"  {what:<26}{count:>8}{host:>14,.0f}{chip:>16,.0f}"
              f"{'UART' if host < chip else 'chip':>7}")
    return 0


def cmd_build(args):
    from boards.build import TimingError, build_bitstream
    from boards.synth import SynthError
    from boards.tops import BoardTop
    config = _top_config(args)
    build_dir = Path(args.build_dir or f"build/{config.name}")
    print(f"building {config.name} in {build_dir} ...", flush=True)
    try:
        report = build_bitstream(BoardTop(config), args.board, build_dir=build_dir,
                                 seed=args.seed)
    except TimingError as error:
        print(error.report.format() if getattr(error, "report", None) else "",
              file=sys.stderr)
        print(f"lowprec build: error: {error}", file=sys.stderr)
        return 1
    except SynthError as error:
        print(f"lowprec build: error: {error}", file=sys.stderr)
        return 1
    print(report.format())
    return 0


def add_board_commands(commands):
    """Add ``board`` (``run``, ``info``) and ``build`` to the ``lowprec`` subcommands."""
    from boards.tops import TOPS
    b = commands.add_parser(
        "board", help="stream tensors through a board (or its simulation)",
        description="Talk to a board running a lowprec bitstream over its USB-UART, or to a "
                    "simulation of the same board top (--sim).")
    sub = b.add_subparsers(dest="board_command", metavar="ACTION", required=True)

    def common(p):
        p.add_argument("--board", required=True, choices=list(TOPS),
                       help="which board (and so which top)")
        p.add_argument("--port", help="serial device of the board, e.g. /dev/ttyUSB0 "
                                      "(or a pyserial URL)")
        p.add_argument("--sim", action="store_true",
                       help="talk to a simulation of the board top, UART included, instead")
        p.add_argument("--sim-divisor", type=int, default=None,
                       help="with --sim: clock cycles per UART bit (default the board's); "
                            "smaller is faster to simulate")
        p.add_argument("--timeout", type=float, default=2.0,
                       help="seconds to wait for a response from a board (default 2)")

    run = sub.add_parser(
        "run", help="compress, decompress or multiply-accumulate a file on the board",
        description="Send IN to the board and write the result to OUT. The operation follows "
                    "from IN (.npy tensor: compress, .bin frame: decompress, .npz with 'a' "
                    "and 'g' codes: mac) or --op. Unless --no-check, the result must equal "
                    "the golden model's bit for bit (exit 1 otherwise).")
    common(run)
    run.add_argument("input", metavar="IN", help="IN.npy, IN.bin or IN.npz")
    run.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="frame bytes (compress), .npy values (decompress) or .npy result "
                          "codes (mac)")
    run.add_argument("--op", choices=list(_CONFIG_KEYS), help="the operation (default: "
                                                             "from IN's suffix)")
    run.add_argument("--config", default="", metavar="KEY=VALUE,...",
                     help="compress: elem, rounding, seed, zero_mode; mac: rounding, phase, "
                          "seed (e.g. elem=e2m1,rounding=stochastic,seed=7)")
    run.add_argument("--no-check", action="store_true", help="skip the golden-model check")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_board_run)

    throughput = sub.add_parser(
        "throughput", help="operations per second over the UART vs on chip (with --sim)",
        description="Time compress, decompress and mac jobs on the simulated board in UART "
                    "bit times, and give the rate at the board's baud rate beside the "
                    "on-chip engines' rate at its clock.")
    common(throughput)
    throughput.add_argument("--elements", type=int, default=4096,
                            help="elements (products for mac) per job (default 4096)")
    throughput.set_defaults(func=cmd_board_throughput)

    info = sub.add_parser("info", help="the board's build, ports and counters")
    common(info)
    info.set_defaults(func=cmd_board_info)

    build = commands.add_parser(
        "build", help="build a board's bitstream and its timing report",
        description="Synthesize, place and route the board's top with YoWASP and write the "
                    "bitstream with a report (utilisation, Fmax against the clock target). "
                    "Failing timing is an error (exit 1).")
    build.add_argument("--board", required=True, choices=list(TOPS))
    build.add_argument("--build-dir", help="where to build (default build/BOARD)")
    build.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    build.set_defaults(func=cmd_build)
