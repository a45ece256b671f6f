"""Amaranth-simulator unit tests of the shared float arithmetic (hdl/float.py) against
golden.encode_float: FloatUnpacker -> FloatRounder over every fp16 and bf16 code."""

import numpy as np
import pytest
from amaranth.hdl import Module, Elaboratable
from amaranth.sim import Simulator

import golden
from hdl.float import FloatUnpacker, FloatRounder, ROUNDING_NAMES


class _Convert(Elaboratable):
    """Unpacker of ``source`` feeding a rounder to ``target``, shifted by ``shift`` (a power
    of two applied to the value, as the MX cores do with the shared exponent)."""

    def __init__(self, source, target, saturate):
        self.unpacker = FloatUnpacker(source)
        self.rounder = FloatRounder(target, exponent_shape=range(-400, 400),
                                    sig_bits=golden.resolve_format(source).man_bits + 1,
                                    sr_bits=8, saturate=saturate)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpacker = u = self.unpacker
        m.submodules.rounder = r = self.rounder
        m.d.comb += [
            u.en.eq(1),
            r.en.eq(1),
            r.sign.eq(u.value.sign),
            r.exponent.eq(u.value.exponent),
            r.significand.eq(u.value.significand),
            r.inf.eq(u.inf),
            r.nan.eq(u.nan),
        ]
        return m


def _run(source, target, rounding, saturate, codes, draws):
    dut = _Convert(source, target, saturate)
    out = []
    latency = FloatUnpacker.LATENCY + FloatRounder.LATENCY

    async def testbench(ctx):
        ctx.set(dut.rounder.mode, ROUNDING_NAMES[rounding])
        for index in range(len(codes) + latency):
            if index < len(codes):
                ctx.set(dut.unpacker.code, int(codes[index]))
            # The draw meets its value at the rounder's input, after the unpacker.
            if 0 <= index - FloatUnpacker.LATENCY < len(codes):
                ctx.set(dut.rounder.draw, int(draws[index - FloatUnpacker.LATENCY]))
            await ctx.tick()
            if index >= latency - 1 and len(out) < len(codes):
                out.append(ctx.get(dut.rounder.code))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(out, dtype=np.int64)


def _values(source, codes):
    return golden.decode_float(codes, source)


CASES = [
    # source, target, rounding, saturate, subset of codes
    ("fp16", "e4m3", "nearest_even", True, None),
    ("fp16", "e5m2", "nearest_even", False, None),
    ("fp16", "e2m1", "stochastic", True, None),
    ("fp16", "int8", "nearest_away", True, None),
    ("fp16", "dlfloat16", "nearest_even", False, None),
    ("bf16", "fp16", "nearest_even", False, None),
    ("bf16", "e3m2", "toward_zero", True, None),
    ("bf16", "int4", "stochastic", True, None),
    ("e4m3", "e2m3", "nearest_even", True, None),
]


@pytest.mark.parametrize("source,target,rounding,saturate,subset", CASES)
def test_rounder_matches_golden(source, target, rounding, saturate, subset):
    width = golden.resolve_format(source).bits
    codes = np.arange(1 << width)
    draws = np.random.default_rng(5).integers(0, 256, codes.size)
    values = _values(source, codes)
    expected = golden.encode_float(values, target, rounding, saturate,
                                   random=draws).astype(np.int64)
    got = _run(source, target, rounding, saturate, codes, draws)
    # NaN codes: the rounder emits the canonical NaN, like the golden model.
    bad = np.nonzero(got != expected)[0]
    assert bad.size == 0, (
        f"{bad.size} mismatches, first: " + ", ".join(
            f"code {codes[i]:#x} ({values[i]!r}): got {got[i]:#x}, expected {expected[i]:#x}"
            for i in bad[:5]))


def test_rounder_rejects_bad_parameters():
    with pytest.raises(ValueError, match="Target format must be a radix-2 format"):
        FloatRounder("fp4_r4", exponent_shape=range(-10, 10), sig_bits=4)
    with pytest.raises(TypeError, match="Exponent shape must be signed"):
        FloatRounder("e4m3", exponent_shape=8, sig_bits=4)
    with pytest.raises(ValueError, match="Stochastic rounding bits must be an integer between"):
        FloatRounder("e4m3", exponent_shape=range(-10, 10), sig_bits=4, sr_bits=0)
    with pytest.raises(ValueError, match="Format must be one of"):
        FloatUnpacker("e9m9")
