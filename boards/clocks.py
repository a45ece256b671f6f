"""Board clocking: PLL parameter searches and the ``sync`` domain of a board top.

:func:`ice40_pll_params` and :func:`ecp5_pll_params` search the divider space of the iCE40
``SB_PLL40_*`` and the ECP5 ``EHXPLLL`` for an output frequency exactly equal (within 1 Hz) to
the one asked for, inside the datasheet ranges, and return the primitive's parameters.

:class:`BoardClock` drives the ``sync`` clock domain of a board design from the platform's default
clock: the pin itself when no frequency change is needed, otherwise through the PLL. ``sync`` is
held in reset until the PLL reports lock, the board's reset button (if the platform has one) is
released, and then :data:`POR_SECONDS` more (iCE40 block RAMs read as zero for about 3 us after
configuration; Amaranth's own iCE40 platform waits 15 us for the same reason).

iCE40 (``SB_PLL40_PAD``)
    DIVR 0..15, DIVF 0..127, DIVQ 1..6; PFD = in / (DIVR + 1) in 10..133 MHz, VCO =
    in * (DIVF + 1) / (DIVR + 1) in 533..1066 MHz, out = VCO / 2**DIVQ; feedback ``SIMPLE``,
    FILTER_RANGE from the PFD as ``icepll`` chooses it. The search order is ``icepll``'s: the
    first exact solution in DIVR, DIVF, DIVQ order. The PLL takes the clock straight from the
    package pin (``PACKAGEPIN``), so the pin is requested raw (``dir="-"``) and must be a
    PLL-capable pad (pin 35 on the iCEBreaker is).
ECP5 (``EHXPLLL``)
    CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128; PFD = in / CLKI_DIV in 3.125..400 MHz,
    out = in * CLKFB_DIV / CLKI_DIV (feedback from CLKOP) in 3.125..400 MHz, VCO =
    out * CLKOP_DIV in 400..800 MHz.
    Among exact solutions the VCO nearest 600 MHz is taken, as ``ecppll`` does; the parameter set
    is ``ecppll``'s (CLKOP_CPHASE = CLKOP_DIV - 1 for zero phase, as Diamond and LiteX use).
"""

from dataclasses import dataclass
from fractions import Fraction

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, \
    ResetSignal, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["ICE40PLLParams", "ECP5PLLParams", "ice40_pll_params", "ecp5_pll_params",
           "BoardClock", "POR_SECONDS"]

#: Extra time ``sync`` stays in reset after the PLL locked and the reset button was released.
POR_SECONDS = 15e-6

_TOLERANCE_HZ = 1.0


def _mhz(hz):
    return f"{hz / 1e6:g} MHz"


def _no_solution(family, in_hz, out_hz):
    return ValueError(f"No {family} PLL configuration makes exactly {_mhz(out_hz)} from "
                      f"{_mhz(in_hz)}")


@dataclass(frozen=True)
class ICE40PLLParams:
    """Parameters of an iCE40 ``SB_PLL40_*`` in ``SIMPLE`` feedback mode."""
    in_hz: float
    out_hz: float
    divr: int
    divf: int
    divq: int
    filter_range: int
    pfd_hz: float
    vco_hz: float
    feedback_path: str = "SIMPLE"

    def instance_params(self):
        """The primitive's parameters as ``Instance`` keyword arguments."""
        return dict(
            p_FEEDBACK_PATH=self.feedback_path,
            p_DIVR=Const(self.divr, 4),
            p_DIVF=Const(self.divf, 7),
            p_DIVQ=Const(self.divq, 3),
            p_FILTER_RANGE=Const(self.filter_range, 3),
        )


@dataclass(frozen=True)
class ECP5PLLParams:
    """Parameters of an ECP5 ``EHXPLLL`` with CLKOP fed back."""
    in_hz: float
    out_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    pfd_hz: float
    vco_hz: float

    def instance_params(self):
        """The primitive's parameters (and ``ecppll``'s attributes) as ``Instance`` kwargs."""
        return dict(
            a_FREQUENCY_PIN_CLKI=f"{self.in_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.out_hz / 1e6:g}",
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC",
            p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self.clki_div,
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=self.clkop_div,
            p_CLKOP_CPHASE=self.clkop_div - 1,
            p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=self.clkfb_div,
        )


def _check_freqs(in_hz, out_hz):
    for what, hz in (("Input", in_hz), ("Output", out_hz)):
        if not isinstance(hz, (int, float)) or not hz > 0:
            raise ValueError(f"{what} frequency must be a positive number, not {hz!r}")


def _ice40_filter_range(pfd_mhz):
    # icepll's choice of loop filter from the PFD frequency.
    for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if pfd_mhz < limit:
            return value
    return 6


def ice40_pll_params(in_hz, out_hz):
    """DIVR/DIVF/DIVQ of an iCE40 PLL making exactly ``out_hz`` from ``in_hz``.

    Raises ``ValueError`` if no setting inside the datasheet ranges is within 1 Hz.
    """
    _check_freqs(in_hz, out_hz)
    fin = Fraction(in_hz)
    for divr in range(16):
        pfd = fin / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                fout = vco / 2 ** divq
                if abs(fout - Fraction(out_hz)) <= _TOLERANCE_HZ:
                    return ICE40PLLParams(
                        in_hz=float(in_hz), out_hz=float(fout), divr=divr, divf=divf,
                        divq=divq, filter_range=_ice40_filter_range(float(pfd) / 1e6),
                        pfd_hz=float(pfd), vco_hz=float(vco))
    raise _no_solution("iCE40", in_hz, out_hz)


def ecp5_pll_params(in_hz, out_hz):
    """CLKI_DIV/CLKFB_DIV/CLKOP_DIV of an ECP5 PLL making exactly ``out_hz`` from ``in_hz``.

    Raises ``ValueError`` if no setting inside the datasheet ranges is within 1 Hz.
    """
    _check_freqs(in_hz, out_hz)
    fin, target = Fraction(in_hz), Fraction(out_hz)
    best = None
    for clki_div in range(1, 129):
        pfd = fin / clki_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            fout = pfd * clkfb_div
            if abs(fout - target) > _TOLERANCE_HZ or not 3.125e6 <= fout <= 400e6:
                continue
            for clkop_div in range(1, 129):
                vco = fout * clkop_div
                if not 400e6 <= vco <= 800e6:
                    continue
                if best is None or abs(vco - 600_000_000) < abs(best.vco_hz - 600e6):
                    best = ECP5PLLParams(
                        in_hz=float(in_hz), out_hz=float(fout), clki_div=clki_div,
                        clkfb_div=clkfb_div, clkop_div=clkop_div, pfd_hz=float(pfd),
                        vco_hz=float(vco))
    if best is None:
        raise _no_solution("ECP5", in_hz, out_hz)
    return best


class BoardClock(Elaboratable):
    """The ``sync`` domain at ``out_hz`` from the platform's default clock at ``in_hz``.

    ``family`` is ``"ice40"`` or ``"ecp5"``. ``pll`` holds the PLL parameters (``None`` when
    ``out_hz == in_hz`` and the pin clocks ``sync`` directly). ``clk`` is the signal that carries
    the ``sync`` clock; the board build puts its timing constraint on it.

    This module drives the clock and reset of ``sync``; the module that instantiates it defines
    the domain (``m.domains.sync = ClockDomain("sync")``), so that the domain is visible to the
    design next to it (Amaranth 0.6 no longer lets a domain leak out of a submodule).
    """

    def __init__(self, *, family, in_hz, out_hz):
        if family not in ("ice40", "ecp5"):
            raise ValueError(f"Family must be 'ice40' or 'ecp5', not {family!r}")
        _check_freqs(in_hz, out_hz)
        self.family = family
        self.in_hz = in_hz
        self.out_hz = out_hz
        if out_hz == in_hz:
            self.pll = None
        elif family == "ice40":
            self.pll = ice40_pll_params(in_hz, out_hz)
        else:
            self.pll = ecp5_pll_params(in_hz, out_hz)
        self.clk = Signal(name="clk_sync", attrs={"keep": 1})

    def elaborate(self, platform):
        m = Module()
        locked = Signal(name="pll_locked")

        if self.pll is None:
            m.submodules.clk_buf = clk_buf = io.Buffer(
                "i", platform.request(platform.default_clk, dir="-"))
            m.d.comb += [self.clk.eq(clk_buf.i), locked.eq(1)]
        elif self.family == "ice40":
            pad = platform.request(platform.default_clk, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                **self.pll.instance_params(),
                p_PLLOUT_SELECT="GENCLK",
                io_PACKAGEPIN=pad.io,
                i_RESETB=Const(1),
                i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=self.clk,
                o_LOCK=locked,
            )
        else:
            m.submodules.clk_buf = clk_buf = io.Buffer(
                "i", platform.request(platform.default_clk, dir="-"))
            m.submodules.pll = Instance(
                "EHXPLLL",
                **self.pll.instance_params(),
                i_CLKI=clk_buf.i,
                i_CLKFB=self.clk,
                i_RST=Const(0),
                i_STDBY=Const(0),
                i_PHASESEL0=Const(0),
                i_PHASESEL1=Const(0),
                i_PHASEDIR=Const(1),
                i_PHASESTEP=Const(1),
                i_PHASELOADREG=Const(1),
                i_PLLWAKESYNC=Const(0),
                i_ENCLKOP=Const(0),
                o_CLKOP=self.clk,
                o_LOCK=locked,
            )

        button = Const(0)
        if getattr(platform, "default_rst", None) is not None:
            m.submodules.rst_buf = rst_buf = io.Buffer(
                "i", platform.request(platform.default_rst, dir="-"))
            button = rst_buf.i

        # Reset: PLL not locked or button pressed, synchronised to the new clock, then a
        # power-on delay counted in that clock before ``sync`` leaves reset.
        m.domains.boot = ClockDomain("boot", local=True)
        m.d.comb += [ClockSignal("sync").eq(self.clk), ClockSignal("boot").eq(self.clk)]
        m.submodules.boot_sync = ResetSynchronizer(~locked | button, domain="boot")

        delay = max(int(POR_SECONDS * self.out_hz), 2)
        timer = Signal(range(delay + 1), name="por_timer")
        ready = Signal(name="por_ready")
        with m.If(timer == delay):
            m.d.boot += ready.eq(1)
        with m.Else():
            m.d.boot += timer.eq(timer + 1)
        m.d.comb += ResetSignal("sync").eq(~ready)
        return m
