"""The MAC benchmark rows, the shift-vs-multiplier summary and the throughput section (no
synthesis)."""

import pytest

from boards.synth import DEVICES as SYNTH_DEVICES
from lowprec import bench, bench_mac


@pytest.fixture(scope="module")
def mac_benches():
    bench._register_project_benches()
    return {b.name: b for b in map(bench._as_bench, bench.BENCHES)
            if b.name.startswith("mac-")}


def test_rows_registered(mac_benches):
    from hdl.mac import ShiftMACArray, MultiplierMACArray
    assert len(mac_benches) == 18
    for lanes in (8, 16, 32):
        for units in (1, 4, 8):
            for kind, cls in (("shift", ShiftMACArray), ("mult", MultiplierMACArray)):
                entry = mac_benches[bench_mac.bench_name(kind, lanes, units)]
                assert entry.params == {"units": units, "lanes": lanes,
                                        "depth": bench_mac.DEPTH}
                assert entry.elements_per_cycle == lanes * units
                assert entry.dsp is False
                assert entry.quick == ((lanes, units) == (8, 1))
    core = mac_benches["mac-mult-array-l8-p4"].factory()
    assert type(core) is MultiplierMACArray
    assert type(mac_benches["mac-shift-array-l8-p4"].factory()) is ShiftMACArray
    assert bench_mac.shift_vs_multiplier in bench.SYNTH_SUMMARIES
    assert bench_mac.mac_throughput in bench.EXTRA_SECTIONS


def test_fabric_only_options():
    assert SYNTH_DEVICES["ecp5-85f"].fabric_opts == "-nodsp"
    assert "-dsp" not in SYNTH_DEVICES["ice40up5k"].fabric_opts.split()
    assert SYNTH_DEVICES["ice40up5k"].synth_opts == "-dsp"  # the default is unchanged


def _row(name, device, luts, fmax, **extra):
    return {"section": bench.SYNTH_SECTION, "name": name, "device": device, "luts": luts,
            "fmax_mhz": fmax, **extra}


def test_comparison():
    rows = [
        _row("mac-shift-array-l8-p1", "ecp5-85f", 100, 200.0),
        _row("mac-mult-array-l8-p1", "ecp5-85f", 300, 150.0),
        _row("mac-shift-array-l8-p4", "ecp5-85f", 400, 100.0),
        _row("mac-mult-array-l8-p4", "ecp5-85f", 600, 150.0),
        _row("mac-shift-array-l32-p8", "ice40up5k", None, None, error="x", no_fit=True),
        _row("mac-mult-array-l32-p8", "ice40up5k", None, None, error="x", no_fit=True),
        _row("mx-quantizer-e4m3-x1", "ecp5-85f", 5, 300.0),
    ]
    title, out = bench_mac.shift_vs_multiplier(rows)
    by = {(r["L"], r["P"], r["device"]): r for r in out}
    assert len(out) == 3
    small = by[8, 1, "ecp5-85f"]
    assert small["shift LUT/MAC"] == 12.5 and small["mult LUT/MAC"] == 37.5
    assert small["target met"] == "yes"
    assert by[8, 4, "ecp5-85f"]["target met"] == "NO"
    assert by[8, 4, "ecp5-85f"]["Fmax target"] == "NO"
    assert by[32, 8, "ice40up5k"]["shift LUT"] == "no fit"
    assert bench_mac.shift_vs_multiplier(rows[-1:]) is None


def test_no_fit_detection():
    assert bench._is_no_fit("SynthError: ... ERROR: Unable to place cell 'x', no BELs "
                            "remaining to implement cell type 'ICESTORM_LC'")
    assert not bench._is_no_fit("SynthError: yosys crashed")


def test_throughput_tiny():
    row = bench_mac.measure_throughput(lanes=2, units=2, beats=16, beats_per_dot=2)
    assert row["correct"]
    assert row["mac_per_cycle"] == 2 * 2 == row["peak"]
