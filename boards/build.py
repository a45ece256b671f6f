"""Bitstreams for the boards: clocking, UART pins, the build and its timing report.

A board top is a ``wiring.Component`` with ports ``rx: In(1)`` (UART from the host) and
``tx: Out(1)`` (UART to the host) in the ``sync`` domain. :class:`BoardWrapper` puts it on a
board: :class:`boards.clocks.BoardClock` makes ``sync`` at the board's ``sys_hz`` (PLL from the
board oscillator), the UART pins of ``platform.request("uart", 0)`` are connected (``rx``
through a two-flop synchroniser, idle high), and :func:`build_bitstream` runs Yosys, nextpnr
(constrained at ``sys_hz``) and the packer through Amaranth's build flow with the YoWASP tools.

Boards (:data:`BOARDS`; the clock and baud choices are all in ``_CHOICES``):

=============  ======================  ===========  ========  =========  =======
name           device                  oscillator   sync      baud       divisor
=============  ======================  ===========  ========  =========  =======
icebreaker     iCE40UP5K-SG48          12 MHz       36 MHz    3 Mbit/s   12
ulx3s-85f      LFE5U-85F-6BG381C       25 MHz       45 MHz    3 Mbit/s   15
ecpix5-85      LFE5UM5G-85F-8BG554C    100 MHz      60 MHz    3 Mbit/s   20
=============  ======================  ===========  ========  =========  =======

The ULX3S's ``uart_tx_enable`` resource (pin L3) is not requested: the FPGA's ``tx`` pin (L4)
goes straight to the FT231X's RXD. L3 is the FT231X's TXDEN (CBUS) line, which the FTDI chip
drives (the board's reference constraint file names it ``ftdi_txden``, "FPGA receives"), so it
is left undriven here although amaranth-boards declares it as an FPGA output. Not yet checked on
a board.
"""

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Module, Shape
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth_boards.ecpix5 import ECPIX585Platform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .clocks import BoardClock, ecp5_pll_params, ice40_pll_params
from .synth import (_PREPARE_LOCK, SynthError, _critical_path, _fmax, _run_plan,
                    _set_tool_defaults, _tail, _warm_up)

__all__ = ["Board", "BOARDS", "BoardWrapper", "BuildReport", "TimingError", "build_bitstream"]


class TimingError(RuntimeError):
    """nextpnr's Fmax for the ``sync`` clock is below the board's ``sys_hz``."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


_TOOLS = {"ice40": ("NEXTPNR_ICE40", "YOSYS", "ICEPACK"),
          "ecp5": ("NEXTPNR_ECP5", "YOSYS", "ECPPACK")}
_BITSTREAM = {"ice40": "top.bin", "ecp5": "top.bit"}


@dataclass(frozen=True)
class Board:
    """One board: its platform, clocking, UART rate and how to program it.

    ``clk_hz`` is the board oscillator (the platform's default clock), ``sys_hz`` the ``sync``
    domain after the PLL, ``baud`` the UART rate; ``divisor`` (``sys_hz / baud``) must be an
    integer. ``flash`` is the command that loads the bitstream, for the README.
    """
    name: str
    platform: type
    family: str
    device: str
    clk_hz: int
    sys_hz: int
    baud: int
    uart: str
    flash: str

    def __post_init__(self):
        if self.family not in _TOOLS:
            raise ValueError(f"Family must be one of {', '.join(map(repr, _TOOLS))}, "
                             f"not {self.family!r}")
        for what in ("clk_hz", "sys_hz", "baud"):
            value = getattr(self, what)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{what} must be a positive integer, not {value!r}")
        if self.sys_hz % self.baud:
            raise ValueError(f"System clock {self.sys_hz} Hz is not a whole multiple of "
                             f"{self.baud} baud (divisor {self.sys_hz / self.baud:g})")

    @property
    def divisor(self):
        """System clock cycles per UART bit."""
        return self.sys_hz // self.baud

    @property
    def bitstream(self):
        """File name of the bitstream in the build directory."""
        return _BITSTREAM[self.family]

    def pll(self):
        """The PLL parameters for ``clk_hz -> sys_hz``, or ``None`` when no PLL is needed."""
        if self.sys_hz == self.clk_hz:
            return None
        search = ice40_pll_params if self.family == "ice40" else ecp5_pll_params
        return search(self.clk_hz, self.sys_hz)


# name: (platform, family, device, oscillator Hz, sys_hz, baud, UART bridge, flash command)
_CHOICES = {
    "icebreaker": (ICEBreakerPlatform, "ice40", "iCE40UP5K-SG48",
                   12_000_000, 12_000_000, 3_000_000, "FT2232H", "iceprog top.bin"),
    "ulx3s-85f": (ULX3S_85F_Platform, "ecp5", "LFE5U-85F-6BG381C",
                  25_000_000, 45_000_000, 3_000_000, "FT231X",
                  "openFPGALoader --board ulx3s top.bit"),
    "ecpix5-85": (ECPIX585Platform, "ecp5", "LFE5UM5G-85F-8BG554C",
                  100_000_000, 60_000_000, 3_000_000, "FT2232",
                  "openFPGALoader --board ecpix5 top.bit"),
}

BOARDS = {name: Board(name, *choice) for name, choice in _CHOICES.items()}


class BoardWrapper(Elaboratable):
    """``top`` on ``board``: the ``sync`` clock from :class:`BoardClock`, UART pins connected."""

    def __init__(self, top, board):
        if not isinstance(board, Board):
            raise TypeError(f"Board must be a Board, not {board!r}")
        if not isinstance(top, wiring.Component):
            raise TypeError(f"Top must be a wiring.Component, not {top!r}")
        for name, flow in (("rx", wiring.In), ("tx", wiring.Out)):
            members = top.signature.members
            member = members[name] if name in members else None
            if (member is None or not member.is_port or member.flow != flow
                    or Shape.cast(member.shape).width != 1):
                raise TypeError(f"Top must have a port {name}: {flow.name}(1)")
        self.top = top
        self.board = board
        self.clock = BoardClock(family=board.family, in_hz=board.clk_hz, out_hz=board.sys_hz)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")  # clock and reset driven by BoardClock
        m.submodules.clock = self.clock
        m.submodules.top = self.top
        platform.add_clock_constraint(self.clock.clk, self.board.sys_hz)

        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.rx_sync = FFSynchronizer(rx_buf.i, self.top.rx, init=1)
        m.d.comb += tx_buf.o.eq(self.top.tx)
        return m


@dataclass
class BuildReport:
    """Result of :func:`build_bitstream`.

    ``target_mhz``: the ``sync`` clock asked for (``sys_hz``); ``fmax_mhz``: what nextpnr
    achieved for it after routing; ``timing_met``: ``fmax_mhz >= target_mhz``. ``utilisation``:
    nextpnr's ``{cell type: {"used": n, "available": m}}`` for the cell types in use.
    ``pll``: the PLL parameters (empty without a PLL).
    """
    board: str
    device: str
    target_mhz: float
    fmax_mhz: float
    timing_met: bool
    utilisation: dict
    bitstream: str
    seconds: float
    critical_path: str = ""
    seed: int = 1
    pll: dict = field(default_factory=dict)
    build_dir: str = ""

    def as_dict(self):
        return dataclasses.asdict(self)

    def format(self):
        lines = [f"{self.board} ({self.device}), seed {self.seed}, {self.seconds:.1f} s",
                 f"{'cell':<16}{'used':>8}{'available':>11}{'%':>7}"]
        for cell, u in self.utilisation.items():
            share = 100 * u["used"] / u["available"] if u["available"] else 0.0
            lines.append(f"{cell:<16}{u['used']:>8}{u['available']:>11}{share:>6.1f}%")
        verdict = "PASS" if self.timing_met else "FAIL"
        lines.append(f"sync Fmax {self.fmax_mhz:.2f} MHz, target {self.target_mhz:g} MHz: "
                     f"{verdict}")
        if self.critical_path:
            lines.append(f"critical path: {self.critical_path}")
        lines.append(f"bitstream: {self.bitstream}")
        return "\n".join(lines)


def _utilisation(report):
    return {cell: {"used": int(u["used"]), "available": int(u["available"])}
            for cell, u in report.get("utilization", {}).items() if int(u["used"])}


def build_bitstream(top, board, *, build_dir, seed=1):
    """Build the bitstream of ``top`` on ``board`` (a :class:`Board` or a name in BOARDS).

    Everything is written to ``build_dir`` (``top.bin`` or ``top.bit``, the tool logs,
    ``build.log``, ``top.report.json`` from nextpnr, and this build's ``report.txt`` and
    ``report.json``). Returns a :class:`BuildReport`. Raises :class:`boards.synth.SynthError`
    if a tool fails and :class:`TimingError` (with the report attached) if nextpnr's Fmax for
    the ``sync`` clock is below ``board.sys_hz``.
    """
    if isinstance(board, str):
        if board not in BOARDS:
            raise ValueError(f"Board must be one of {', '.join(map(repr, BOARDS))}, "
                             f"not {board!r}")
        board = BOARDS[board]
    if not isinstance(board, Board):
        raise TypeError(f"Board must be a Board or a board name, not {board!r}")
    root = Path(build_dir)

    _set_tool_defaults()
    _warm_up(_TOOLS[board.family])
    start = time.monotonic()
    with _PREPARE_LOCK:
        wrapper = BoardWrapper(top, board)
        platform = board.platform()
        plan = platform.build(
            wrapper, name="top", do_build=False,
            nextpnr_opts=f"--report top.report.json --timing-allow-fail --seed {int(seed)}",
        )
    log = _run_plan(plan, root, board.name)
    seconds = time.monotonic() - start

    bitstream = root / board.bitstream
    if not bitstream.is_file() or bitstream.stat().st_size == 0:
        raise SynthError(f"{board.name} build wrote no bitstream {bitstream}; "
                         f"log tail:\n{_tail(log)}")
    pnr = json.loads((root / "top.report.json").read_text())
    fmax, _ = _fmax(pnr)
    critical_path, _ = _critical_path(pnr)
    target_mhz = board.sys_hz / 1e6
    pll = wrapper.clock.pll
    report = BuildReport(
        board=board.name,
        device=board.device,
        target_mhz=target_mhz,
        fmax_mhz=round(fmax, 2),
        timing_met=fmax >= target_mhz,
        utilisation=_utilisation(pnr),
        bitstream=str(bitstream),
        seconds=round(seconds, 1),
        critical_path=critical_path,
        seed=int(seed),
        pll={} if pll is None else dataclasses.asdict(pll),
        build_dir=str(root),
    )
    (root / "report.txt").write_text(report.format() + "\n")
    (root / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if not report.timing_met:
        raise TimingError(f"{board.name}: sync Fmax {report.fmax_mhz:.2f} MHz is below the "
                          f"{target_mhz:g} MHz target", report)
    return report
