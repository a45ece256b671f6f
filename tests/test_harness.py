"""Tests of the cocotb stream harness (`sim`) on tiny cores, including deliberately broken ones."""

import random
import time

import numpy as np
import pytest
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from harness_cores import AdderIn, AdderOut, NeverValid, PipelinedAdder, adder_reference
from sim.api import pack, pack_beats, run_stream, unpack, unpack_beats
from sim.runner import SimulatorUnavailable, check_simulator
from sim.streams import Scoreboard
from sim.verilog import build_dir_for, to_verilog


def adder_case(n, seed, cfg_changes=0.05):
    """Random adder beats, per-beat `cfg` side assignments, and the packed expected outputs."""
    rng = random.Random(seed)
    beats = [{"a": rng.randrange(256), "b": rng.randrange(256), "last": int(k % 16 == 15)}
             for k in range(n)]
    cfgs, side, cfg = [], {}, 0
    for k in range(n):
        if rng.random() < cfg_changes:
            cfg = rng.randrange(256)
            side[k] = {"cfg": cfg}
        cfgs.append(cfg)
    in_beats = [pack(AdderIn, b) for b in beats]
    expected = [pack(AdderOut, e) for e in adder_reference(beats, cfgs)]
    return in_beats, expected, side


# --- cocotb runs ------------------------------------------------------------------------------

@pytest.mark.cocotb
@pytest.mark.parametrize("stall", [0.0, 0.5, 0.9])
def test_good_core_matches_reference(stall):
    in_beats, expected, side = adder_case(1500, seed=int(stall * 10))
    result = run_stream(PipelinedAdder(), in_beats, expected=expected, side=side,
                        in_stall=stall, out_stall=stall, seed=7)
    assert result.out_beats == expected
    if stall:
        assert result.cycles > 1.5 * len(in_beats)  # the stalls really happened


@pytest.mark.cocotb
def test_capture_mode_returns_outputs():
    in_beats, expected, side = adder_case(300, seed=3)
    result = run_stream(PipelinedAdder(), in_beats, expected_count=len(in_beats), side=side,
                        in_stall=0.3, out_stall=0.3)
    assert result.out_beats == expected
    assert unpack(AdderOut, result.out_beats[0]) == unpack(AdderOut, expected[0])


@pytest.mark.cocotb
def test_full_throughput():
    in_beats, expected, side = adder_case(2000, seed=4)
    result = run_stream(PipelinedAdder(), in_beats, expected=expected, side=side)
    # One beat a cycle, plus the two-cycle latency of the pipeline.
    assert result.cycles == len(in_beats) + 2
    assert result.cycles_per_beat == pytest.approx(1.0, abs=0.01)


@pytest.mark.cocotb
@pytest.mark.parametrize("bug, message", [
    ("drop", r"stream protocol violations(.|\n)*valid dropped while stalled"),
    ("corrupt", r"beats differ(.|\n)*payload changed from 0x[0-9a-f]+ to 0x[0-9a-f]+ while stalled"),
])
def test_broken_core_fails(bug, message):
    in_beats, expected, side = adder_case(400, seed=5)
    with pytest.raises(AssertionError, match=message):
        run_stream(PipelinedAdder(bug=bug), in_beats, expected=expected, side=side,
                   in_stall=0.3, out_stall=0.5)


@pytest.mark.cocotb
def test_broken_core_passes_without_backpressure():
    # The bugs only show under backpressure: this is why the stall tests exist.
    in_beats, expected, side = adder_case(200, seed=6)
    run_stream(PipelinedAdder(bug="drop"), in_beats, expected=expected, side=side)


@pytest.mark.cocotb
def test_wrong_expectation_reports_mismatch():
    in_beats, expected, side = adder_case(100, seed=8)
    wrong = list(expected)
    wrong[17] ^= 0x4
    with pytest.raises(AssertionError,
                       match=r"1 of 100 compared beats differ; first at beat 17:\n"
                             rf"  beat 17: expected {wrong[17]:#05x}, got {expected[17]:#05x}"):
        run_stream(PipelinedAdder(), in_beats, expected=wrong, side=side)


@pytest.mark.cocotb
def test_extra_output_beat_fails():
    in_beats, expected, side = adder_case(50, seed=9)
    with pytest.raises(AssertionError, match=r"received 50 beats, expected 49 \(1 unexpected"):
        run_stream(PipelinedAdder(), in_beats, expected=expected[:-1], side=side)


@pytest.mark.cocotb
def test_deadlock_fails_by_max_cycles():
    in_beats, expected, _ = adder_case(100, seed=10)
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"Not done after max_cycles=5000 cycles(.|\n)*"
                                             r"0 of 100 output beats received"):
        run_stream(NeverValid(), in_beats, expected=expected, max_cycles=5000,
                   max_idle_cycles=10**9)
    assert time.monotonic() - start < 60


@pytest.mark.cocotb
def test_deadlock_fails_by_idle_bound():
    in_beats, expected, _ = adder_case(100, seed=11)
    with pytest.raises(AssertionError, match=r"No transfer on either stream for 300 cycles"):
        run_stream(NeverValid(), in_beats, expected=expected, max_idle_cycles=300)


@pytest.mark.cocotb
def test_waves_are_kept_on_request():
    in_beats, expected, side = adder_case(20, seed=13)
    result = run_stream(PipelinedAdder(), in_beats, expected=expected, side=side, waves=True,
                        simulator="icarus")
    assert (result.run_dir / "top.fst").stat().st_size > 0
    assert run_stream(PipelinedAdder(), in_beats, expected=expected, side=side,
                      waves=False).run_dir is None


@pytest.mark.cocotb
@pytest.mark.parametrize("stall", [0.0, 0.7])
def test_verilator(stall):
    try:
        check_simulator("verilator")
    except SimulatorUnavailable as e:
        pytest.skip(f"Verilator is not usable: {e}")
    in_beats, expected, side = adder_case(1000, seed=12)
    result = run_stream(PipelinedAdder(), in_beats, expected=expected, side=side,
                        in_stall=stall, out_stall=stall, simulator="verilator")
    assert result.out_beats == expected
    if not stall:
        assert result.cycles == len(in_beats) + 2


# --- parameter validation ---------------------------------------------------------------------

def test_run_stream_validates_parameters():
    core = PipelinedAdder()
    to_verilog(core)  # elaborated once (the checks below come before elaboration)
    with pytest.raises(ValueError, match=r"Either expected beats or an expected count"):
        run_stream(core, [1, 2])
    with pytest.raises(ValueError, match=r"Output stall probability must be between 0 and 0.9, "
                                         r"not 0.95"):
        run_stream(core, [1], expected=[1], out_stall=0.95)
    with pytest.raises(ValueError, match=r"Input beat 1 \(0x20000\) does not fit the 17-bit"):
        run_stream(core, [1, 1 << 17], expected_count=2)
    with pytest.raises(ValueError, match=r"names 'gain', which is not an extra input port "
                                         r"\(ports: cfg\)"):
        run_stream(core, [1], expected_count=1, side={0: {"gain": 1}})
    with pytest.raises(TypeError, match=r"but beat 0 is \{'a': 1\}"):
        run_stream(core, [{"a": 1}], expected_count=1)


# --- pure Python ------------------------------------------------------------------------------

NESTED = data.StructLayout({
    "tag": 3,
    "vec": data.ArrayLayout(signed(5), 3),
    "inner": data.StructLayout({"x": unsigned(7), "pairs": data.ArrayLayout(
        data.StructLayout({"lo": 2, "hi": signed(3)}), 2)}),
    "wide": 61,
})


def test_pack_unpack_round_trip_nested():
    value = {"tag": 5, "vec": [-16, 15, -1],
             "inner": {"x": 100, "pairs": [{"lo": 3, "hi": -4}, {"lo": 0, "hi": 3}]},
             "wide": (1 << 61) - 3}
    width = Shape.cast(NESTED).width
    assert width == 3 + 3 * 5 + 7 + 2 * (2 + 3) + 61
    bits = pack(NESTED, value)
    assert 0 <= bits < 1 << width
    assert unpack(NESTED, bits) == value
    assert bits & 0b111 == 5  # first field in the least significant bits
    rng = random.Random(0)
    for _ in range(200):
        raw = rng.getrandbits(width)
        assert pack(NESTED, unpack(NESTED, raw)) == raw
    assert unpack(unsigned(8), pack(unsigned(8), 200)) == 200
    assert pack(signed(8), -1) == 0xff and unpack(signed(8), 0xff) == -1


def test_pack_checks_values():
    with pytest.raises(ValueError, match=r"Value of payload\['vec'\]\[1\] must be between -16 "
                                         r"and 15 for signed\(5\), not 16"):
        pack(NESTED, {"vec": [0, 16, 0]})
    with pytest.raises(ValueError, match=r"must have 3 elements, not 2"):
        pack(NESTED, {"vec": [0, 1]})
    with pytest.raises(ValueError, match=r"payload has no field 'nope'"):
        pack(NESTED, {"nope": 1})
    with pytest.raises(ValueError, match=r"Bit pattern must be between 0 and 2047"):
        unpack(AdderOut, 1 << 11)


def test_pack_beats_matches_pack():
    rng = np.random.default_rng(1)
    n = 500
    columns = {
        "tag": rng.integers(0, 8, n),
        "vec": rng.integers(-16, 16, (n, 3)),
        "inner": {"x": rng.integers(0, 128, n), "pairs": [
            {"lo": rng.integers(0, 4, n), "hi": rng.integers(-4, 4, n)} for _ in range(2)]},
        "wide": rng.integers(0, 1 << 61, n, dtype=np.uint64),
    }
    beats = pack_beats(NESTED, columns)
    for k in range(0, n, 37):
        value = {"tag": int(columns["tag"][k]), "vec": [int(v) for v in columns["vec"][k]],
                 "inner": {"x": int(columns["inner"]["x"][k]),
                           "pairs": [{"lo": int(p["lo"][k]), "hi": int(p["hi"][k])}
                                     for p in columns["inner"]["pairs"]]},
                 "wide": int(columns["wide"][k])}
        assert beats[k] == pack(NESTED, value)
    back = unpack_beats(NESTED, beats)
    np.testing.assert_array_equal(back["vec"], columns["vec"])
    np.testing.assert_array_equal(back["wide"], columns["wide"])
    np.testing.assert_array_equal(back["inner"]["pairs"][1]["hi"], columns["inner"]["pairs"][1]["hi"])


def test_pack_beats_array_of_bytes_is_fast():
    layout = data.ArrayLayout(8, 32)  # 256-bit beats
    rng = np.random.default_rng(2)
    values = rng.integers(0, 256, (100_000, 32), dtype=np.uint8)
    start = time.perf_counter()
    beats = pack_beats(layout, values)
    elapsed = time.perf_counter() - start
    assert beats[5] == int.from_bytes(values[5].tobytes(), "little")
    assert beats[7] == pack(layout, values[7])
    np.testing.assert_array_equal(unpack_beats(layout, beats), values)
    assert elapsed < 2.0, f"packing 10^5 beats took {elapsed:.2f} s"


def test_pack_beats_checks_range():
    with pytest.raises(ValueError, match=r"Values of payload\['a'\] must be between 0 and 255, "
                                         r"not 256"):
        pack_beats(AdderIn, {"a": np.array([1, 256]), "b": np.array([0, 0]),
                             "last": np.array([0, 1])})
    with pytest.raises(ValueError, match=r"Columns of payload lack field 'last'"):
        pack_beats(AdderIn, {"a": np.array([1]), "b": np.array([0])})


def test_scoreboard_report():
    board = Scoreboard([0x10, 0x20, 0x30, 0x40], name="o")
    assert board.report([0x10, 0x20, 0x30, 0x40]) is None
    report = board.report([0x10, 0x21, 0x30])
    assert report == ("o: 1 of 3 compared beats differ; first at beat 1:\n"
                      "  beat 1: expected 0x20, got 0x21\n"
                      "o: received 3 beats, expected 4 (1 missing)")
    with pytest.raises(AssertionError, match="first at beat 1"):
        board.check([0x10, 0x21, 0x30, 0x40])


def test_build_dir_is_keyed_by_design():
    good = build_dir_for(to_verilog(PipelinedAdder()), "top")
    assert build_dir_for(to_verilog(PipelinedAdder()), "top") == good
    assert build_dir_for(to_verilog(PipelinedAdder(bug="drop")), "top") != good
    assert (good / "top.v").read_text().startswith("/* Generated by Amaranth")
    with pytest.raises(ValueError, match=r"Module name must be a Verilog identifier, not '1x'"):
        build_dir_for("module x; endmodule", "1x")
