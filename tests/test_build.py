"""Board builds (boards/build.py, boards/clocks.py): PLL parameter searches against hand-checked
values, and real YoWASP bitstream builds of a tiny UART echo top on each board."""

import json

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from boards.build import BOARDS, Board, BoardWrapper, BuildReport, TimingError, build_bitstream
from boards.clocks import BoardClock, ecp5_pll_params, ice40_pll_params
from boards.synth import SynthError


class Echo(wiring.Component):
    """rx to tx through two flip-flops (idle high)."""
    rx: In(1)
    tx: Out(1)

    def elaborate(self, platform):
        m = Module()
        a = Signal(init=1)
        b = Signal(init=1)
        m.d.sync += [a.eq(self.rx), b.eq(a)]
        m.d.comb += self.tx.eq(b)
        return m


class Deep(wiring.Component):
    """A 24-bit register through four chained adders: far slower than the fabric's flop-to-flop
    limit, so a 375 MHz target cannot be met."""
    rx: In(1)
    tx: Out(1)

    def elaborate(self, platform):
        m = Module()
        acc = Signal(24)
        x = acc
        for rot in (5, 11, 17, 3):
            x = (x + x.rotate_left(rot) + self.rx)[:24]
        m.d.sync += acc.eq(x)
        m.d.comb += self.tx.eq(acc.xor())
        return m


# --- PLL searches: hand-checked ---------------------------------------------------------------


def test_ice40_pll_12_to_36():
    # 12 MHz / 1 = 12 MHz PFD; * 48 = 576 MHz VCO; / 2**4 = 36 MHz (icepll -i 12 -o 36).
    p = ice40_pll_params(12e6, 36e6)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (0, 47, 4, 1)
    assert p.vco_hz == 576e6 and p.out_hz == 36e6


def test_ice40_pll_divr_and_filter_range():
    # 30 -> 50 MHz: DIVF + 1 = 50 * 2**q / PFD must be whole with the VCO in 533..1066 MHz.
    # PFD 30 MHz (DIVR 0) and 15 MHz (DIVR 1) leave a factor 1/3; PFD 10 MHz (DIVR 2) works
    # with q = 4: 10 MHz * 80 = 800 MHz, / 16 = 50 MHz.
    p = ice40_pll_params(30e6, 50e6)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (2, 79, 4, 1)
    # 48 -> 36 MHz: PFD 48 MHz * 12 = 576 MHz / 16; icepll's filter range for 44 <= PFD < 66 is 4.
    p = ice40_pll_params(48e6, 36e6)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (0, 11, 4, 4)


def test_ecp5_pll_25_to_45():
    # 25 MHz / 5 = 5 MHz PFD, * 9 = 45 MHz; CLKOP_DIV 13 puts the VCO at 585 MHz, nearest 600.
    p = ecp5_pll_params(25e6, 45e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == (5, 9, 13)
    assert p.vco_hz == 585e6
    params = p.instance_params()
    assert params["p_CLKOP_CPHASE"] == 12
    assert params["p_FEEDBK_PATH"] == "CLKOP"


def test_ecp5_pll_100_to_60():
    # 100 MHz / 5 * 3 = 60 MHz; CLKOP_DIV 10 gives exactly 600 MHz.
    p = ecp5_pll_params(100e6, 60e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.vco_hz) == (5, 3, 10, 600e6)


def test_pll_impossible():
    # 37 MHz needs 37/12 = VCO/2**q, i.e. DIVF+1 = 37 * 2**q / 12 with DIVR 0: never whole
    # with the PFD at 12 MHz, and no other DIVR keeps the PFD >= 10 MHz.
    with pytest.raises(ValueError, match=r"^No iCE40 PLL configuration makes exactly 37 MHz "
                                         r"from 12 MHz$"):
        ice40_pll_params(12e6, 37e6)
    # Above the 533 MHz / 2 limit of the VCO.
    with pytest.raises(ValueError, match=r"exactly 600 MHz from 12 MHz"):
        ice40_pll_params(12e6, 600e6)
    # Above 400 MHz CLKOP.
    with pytest.raises(ValueError, match=r"^No ECP5 PLL configuration makes exactly 450 MHz "
                                         r"from 25 MHz$"):
        ecp5_pll_params(25e6, 450e6)
    # Below 3.125 MHz CLKOP (VCO 400 MHz / CLKOP_DIV 128).
    with pytest.raises(ValueError, match=r"exactly 3 MHz from 25 MHz"):
        ecp5_pll_params(25e6, 3e6)
    with pytest.raises(ValueError, match=r"Output frequency must be a positive number, not 0"):
        ecp5_pll_params(25e6, 0)


def test_board_clock_validation():
    with pytest.raises(ValueError, match=r"Family must be 'ice40' or 'ecp5', not 'gowin'"):
        BoardClock(family="gowin", in_hz=12e6, out_hz=36e6)
    assert BoardClock(family="ice40", in_hz=12e6, out_hz=12e6).pll is None


# --- boards -----------------------------------------------------------------------------------


def test_board_choices():
    assert {name: (b.sys_hz, b.baud, b.divisor) for name, b in BOARDS.items()} == {
        "icebreaker": (12_000_000, 3_000_000, 4),
        "ulx3s-85f": (45_000_000, 3_000_000, 15),
        "ecpix5-85": (60_000_000, 3_000_000, 20),
    }
    for board in BOARDS.values():
        # Every sys_hz is the oscillator's or reachable exactly from it.
        assert board.pll() is None if board.sys_hz == board.clk_hz else \
            board.pll().out_hz == board.sys_hz
        assert board.clk_hz == board.platform().default_clk_frequency


def test_board_divisor_must_be_whole():
    with pytest.raises(ValueError, match=r"System clock 40000000 Hz is not a whole multiple of "
                                         r"3000000 baud \(divisor 13.3333\)"):
        Board("x", ULX3S_85F_Platform, "ecp5", "LFE5U-85F", 25_000_000, 40_000_000,
              3_000_000, "FT231X", "")


def test_wrapper_wants_rx_tx():
    class NoTx(wiring.Component):
        rx: In(1)

        def elaborate(self, platform):
            return Module()

    with pytest.raises(TypeError, match=r"Top must have a port tx: Out\(1\)"):
        BoardWrapper(NoTx(), BOARDS["icebreaker"])


# --- real builds ------------------------------------------------------------------------------


def _netlist_cells(build_dir, cell_type):
    netlist = json.loads((build_dir / "top.json").read_text())
    return [cell for module in netlist["modules"].values()
            for cell in module["cells"].values() if cell["type"] == cell_type]


def _int_param(value):
    return int(value, 2) if isinstance(value, str) else int(value)


# Hand-checked PLL settings each build must put in the netlist.
EXPECTED_PLL = {
    "icebreaker": None,                                # 12 MHz straight from the oscillator
    "icebreaker-36": ("SB_PLL40_PAD", "ICESTORM_PLL",
                   {"DIVR": 0, "DIVF": 47, "DIVQ": 4, "FILTER_RANGE": 1}),
    "ulx3s-85f": ("EHXPLLL", "EHXPLLL",
                  {"CLKI_DIV": 5, "CLKFB_DIV": 9, "CLKOP_DIV": 13, "CLKOP_CPHASE": 12}),
    "ecpix5-85": ("EHXPLLL", "EHXPLLL",
                  {"CLKI_DIV": 5, "CLKFB_DIV": 3, "CLKOP_DIV": 10, "CLKOP_CPHASE": 9}),
}


#: The iCEBreaker with its PLL at 36 MHz (divisor 12), so that the iCE40 PLL is built too.
ICEBREAKER_36 = Board("icebreaker-36", ICEBreakerPlatform, "ice40", "iCE40UP5K-SG48",
                      12_000_000, 36_000_000, 3_000_000, "FT2232H", "iceprog top.bin")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["icebreaker", "icebreaker-36", "ulx3s-85f", "ecpix5-85"])
def test_build_echo(name, tmp_path):
    board = ICEBREAKER_36 if name == "icebreaker-36" else BOARDS[name]
    report = build_bitstream(Echo(), board, build_dir=tmp_path)
    print(report.format())

    bitstream = tmp_path / board.bitstream
    assert report.bitstream == str(bitstream)
    assert bitstream.stat().st_size > 0
    assert report.timing_met and report.fmax_mhz >= board.sys_hz / 1e6
    assert report.target_mhz == board.sys_hz / 1e6

    # Fmax as nextpnr wrote it (one clock in the fabric: sync).
    pnr = json.loads((tmp_path / "top.report.json").read_text())
    assert [round(c["achieved"], 2) for c in pnr["fmax"].values()] == [report.fmax_mhz]
    # The sync clock constraint reached nextpnr as given, not only derived through the PLL.
    assert f"constraining clock net 'clock.clk_sync' to {board.sys_hz / 1e6:.2f} MHz" \
        in (tmp_path / "top.tim").read_text()

    if EXPECTED_PLL[name] is None:
        assert report.pll == {}
        assert not _netlist_cells(tmp_path, "SB_PLL40_PAD")
        return
    primitive, placed, expected = EXPECTED_PLL[name]
    (cell,) = _netlist_cells(tmp_path, primitive)
    assert {k: _int_param(cell["parameters"][k]) for k in expected} == expected
    assert report.utilisation[placed]["used"] == 1
    assert all(report.pll[k.lower()] == v for k, v in expected.items() if k.lower() in report.pll)

    # Reports written next to the bitstream round-trip.
    assert json.loads((tmp_path / "report.json").read_text()) == report.as_dict()
    text = (tmp_path / "report.txt").read_text()
    assert "PASS" in text and f"target {board.sys_hz / 1e6:g} MHz" in text


@pytest.mark.slow
def test_build_timing_failure(tmp_path):
    # 25 MHz * 15 = 375 MHz (VCO 750 MHz, CLKOP_DIV 2), divisor 125: a legal board whose clock
    # no ECP5 fabric path of four chained 24-bit adders can meet.
    fast = Board("ulx3s-375", ULX3S_85F_Platform, "ecp5", "LFE5U-85F-6BG381C", 25_000_000,
                 375_000_000, 3_000_000, "FT231X", "")
    with pytest.raises(TimingError, match=r"^ulx3s-375: sync Fmax \d+\.\d+ MHz is below the "
                                          r"375 MHz target$") as info:
        build_bitstream(Deep(), fast, build_dir=tmp_path)
    report = info.value.report
    assert isinstance(report, BuildReport)
    assert not report.timing_met and report.fmax_mhz < 375
    assert "FAIL" in (tmp_path / "report.txt").read_text()


def test_build_unknown_board(tmp_path):
    with pytest.raises(ValueError, match=r"Board must be one of 'icebreaker', 'ulx3s-85f', "
                                         r"'ecpix5-85', not 'arty'"):
        build_bitstream(None, "arty", build_dir=tmp_path)
