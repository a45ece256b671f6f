"""Synthesis harness: real Yosys + nextpnr builds of a tiny core (boards/synth.py) and the
bench driver (lowprec/bench.py)."""

import json

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from boards.synth import SynthResult, synthesize, wrapper_cost
from lowprec import bench


class StreamCounter(wiring.Component):
    """8-bit accumulator: adds each accepted input to a counter that is always on the output."""

    def __init__(self, width=8):
        self.width = width
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        count = Signal(self.width)
        m.d.comb += [
            self.i.ready.eq(self.o.ready),
            self.o.valid.eq(1),
            self.o.payload.eq(count),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(count + self.i.payload)
        return m


# Ports of StreamCounter(8): in = payload 8 + valid + o.ready, out = payload 8 + valid + i.ready.
IN_BITS = OUT_BITS = 10
# Wrapper by hand: 10 chain + 10 capture + 2 reset FFs; the fold reduces 10 captured bits and
# the chain's last bit (11) to 3 registers (3 LUTs: groups of 4, 4, 3) and then to 1 (1 LUT).
WRAPPER_LUTS, WRAPPER_FFS = 4, 10 + 10 + 2 + 3 + 1


def check_sane(result, device, target_mhz):
    assert isinstance(result, SynthResult)
    assert result.device == device
    assert result.target_mhz == target_mhz
    assert (result.in_bits, result.out_bits) == (IN_BITS, OUT_BITS)
    # The counter's register and nothing else is the core's state.
    assert result.ffs == 8
    assert result.luts > 0
    assert (result.brams, result.dsps, result.sprams) == (0, 0, 0)
    # The wrapper is reported apart and matches its closed form.
    assert (result.wrapper_luts, result.wrapper_ffs) == (WRAPPER_LUTS, WRAPPER_FFS)
    assert wrapper_cost(IN_BITS, OUT_BITS) == (WRAPPER_LUTS, WRAPPER_FFS)
    # nextpnr placed everything: whole-design FFs = core + wrapper.
    pnr_ffs = result.pnr.get("TRELLIS_FF") if device == "ecp5-85f" else None
    if pnr_ffs is not None:
        assert pnr_ffs == result.ffs + result.wrapper_ffs
    assert 0 < result.fmax_mhz < 1000
    assert result.timing_met == (result.fmax_mhz >= target_mhz)
    assert json.loads(json.dumps(result.as_dict()))["ffs"] == 8


def test_ecp5_counter(tmp_path):
    result = synthesize(StreamCounter(), device="ecp5-85f", target_mhz=100,
                        build_dir=tmp_path)
    check_sane(result, "ecp5-85f", 100)
    # An 8-bit adder maps to carry cells; a tiny design meets 100 MHz easily on ECP5.
    assert result.carries > 0
    assert result.timing_met
    assert (tmp_path / "top.tim").exists() and not (tmp_path / "top.config").exists()


@pytest.mark.slow
def test_ice40_counter():
    result = synthesize(StreamCounter(), device="ice40up5k")
    check_sane(result, "ice40up5k", 60)
    assert result.pnr["ICESTORM_LC"] >= result.ffs + result.wrapper_ffs
    assert result.build_dir is None


def test_synthesize_rejects_unknown_device():
    core = StreamCounter()
    core._MustUse__silence = True  # never elaborated, on purpose
    with pytest.raises(ValueError, match=r"Device must be one of 'ice40up5k', 'ecp5-85f', "
                                         r"not 'xc7a35t'"):
        synthesize(core, device="xc7a35t")


def test_bench_driver(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "BENCHES", [])
    monkeypatch.setattr(bench, "EXTRA_SECTIONS", [])
    monkeypatch.setattr(bench, "_registered", True)   # only the placeholder entries
    bench.register("placeholder-counter", StreamCounter, {"width": 8}, elements_per_cycle=1)
    bench.register("placeholder-skipped", StreamCounter, {"width": 8})
    with pytest.raises(ValueError, match=r"Bench 'placeholder-counter' is already registered"):
        bench.register("placeholder-counter", StreamCounter)
    bench.EXTRA_SECTIONS.append(lambda *, quick: ("Dummy speed", [{"what": "x", "quick": quick}]))

    rows = bench.run_benches("COUNTER", devices=("ecp5-85f",), quick=True, sections=True)
    synth, extra = rows[0], rows[1]
    assert len(rows) == 2
    assert synth["name"] == "placeholder-counter" and synth["device"] == "ecp5-85f"
    assert "error" not in synth, synth.get("error")
    assert synth["ffs"] == 8
    assert synth["elements_per_s"] == pytest.approx(synth["fmax_mhz"] * 1e6)
    assert extra == {"section": "Dummy speed", "what": "x", "quick": True}

    out = capsys.readouterr().out
    assert "placeholder-counter" in out and "width=8" in out and "Dummy speed" in out
    assert "placeholder-skipped" not in out

    path = tmp_path / "bench.json"
    bench.write_json(rows, path)
    assert json.loads(path.read_text())["rows"][0]["luts"] == synth["luts"]


def test_bench_help(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--json", "--filter", "--device", "--quick"):
        assert option in out
