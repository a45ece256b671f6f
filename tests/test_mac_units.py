"""Amaranth-simulator unit tests of the MAC's building blocks (hdl/mac.py): the adder tree
against NumPy sums, and the chunk accumulator's GridRounder against golden.encode_float."""

import numpy as np
import pytest
from amaranth.sim import Simulator

import golden
from golden import mac
from golden.formats import encode_float, decode_float
from hdl.float import ROUNDING_NAMES
from hdl.mac import AdderTree, GridRounder


def _tree_sums(count, width, vectors):
    dut = AdderTree(count=count, width=width)
    out = []

    async def testbench(ctx):
        ctx.set(dut.en, 1)
        for index in range(len(vectors) + dut.latency):
            if index < len(vectors):
                for k in range(count):
                    ctx.set(dut.i[k], int(vectors[index][k]))
            if dut.latency == 0:
                out.append(ctx.get(dut.o))
            await ctx.tick()
            if dut.latency and index >= dut.latency - 1 and len(out) < len(vectors):
                out.append(ctx.get(dut.o))

    sim = Simulator(dut)
    if dut.latency:
        sim.add_clock(1e-8)
        sim.add_testbench(testbench)
    else:
        async def combinational(ctx):
            for vector in vectors:
                for k in range(count):
                    ctx.set(dut.i[k], int(vector[k]))
                out.append(ctx.get(dut.o))
        sim.add_testbench(combinational)
    sim.run()
    return np.array(out)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 32])
def test_adder_tree_sums(count):
    width = 6
    rng = np.random.default_rng(count)
    vectors = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (40, count))
    # the extremes: every value most negative, every value most positive
    vectors[0] = -(1 << (width - 1))
    vectors[1] = (1 << (width - 1)) - 1
    assert np.array_equal(_tree_sums(count, width, vectors), vectors.sum(axis=1))


def test_adder_tree_latency():
    assert [AdderTree(count=n, width=4).latency for n in (1, 2, 3, 4, 5, 64)] == \
        [0, 1, 2, 2, 3, 6]


@pytest.mark.parametrize("kwargs, match", [
    ({"count": 0, "width": 4}, r"Value count must be an integer between 1 and 4096, not 0"),
    ({"count": 2, "width": 0}, r"Value width must be a positive integer, not 0"),
])
def test_adder_tree_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdderTree(**kwargs)


def _grid(fmt, width, lsb, sr_bits, rounding, values, draws):
    dut = GridRounder(fmt, width=width, lsb=lsb, sr_bits=sr_bits)
    out = []

    async def testbench(ctx):
        ctx.set(dut.mode, ROUNDING_NAMES[rounding])
        for value, draw in zip(values, draws):
            # magnitudes in and out: the sign stays outside
            ctx.set(dut.magnitude, abs(int(value)))
            ctx.set(dut.draw, int(draw))
            rounded = ctx.get(dut.rounded)
            out.append(-rounded if value < 0 else rounded)

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(out, dtype=np.int64)


def _golden_grid(fmt, lsb, sr_bits, rounding, values, draws):
    x = np.ldexp(values.astype(np.float64), lsb)
    if rounding == "stochastic":
        codes = encode_float(x, fmt, rounding, True, sr_bits=sr_bits, random=draws)
    else:
        codes = encode_float(x, fmt, rounding, True)
    return np.ldexp(decode_float(codes, fmt), -lsb).astype(np.int64)


def _grid_values(fmt, width, lsb, rng):
    """Values around every binade edge and rounding tie of ``fmt`` in units of 2^lsb, plus
    random ones, all inside the signed width."""
    limit = (1 << (width - 1)) - 1
    fmt = golden.resolve_format(fmt)
    edges = []
    for lead in range(width - 1):
        base = 1 << lead
        step = 1 << max(lead - fmt.man_bits, 0)
        for v in (base, base + step // 2, base + step // 2 + 1, base - 1, base + step,
                  base + 3 * step // 2, 2 * base - 1):
            edges.append(v)
    largest = int(fmt.max_finite * 2.0 ** -lsb)
    edges += [0, 1, largest - 1, largest, largest + 1, limit, limit - 1]
    values = np.array([v for v in edges if 0 <= v <= limit], dtype=np.int64)
    values = np.concatenate([values, -values, rng.integers(-limit, limit + 1, 300)])
    return values


@pytest.mark.parametrize("fmt", ["fp16", "dlfloat16", "e4m3", "e5m2", "e2m1"])
@pytest.mark.parametrize("rounding", list(ROUNDING_NAMES))
def test_grid_rounder_matches_encode_float(fmt, rounding):
    lsb = mac.product_lsb("fp4_r4")
    width = mac.accumulator_bits(fmt, chunk=16)
    sr_bits = 5
    rng = np.random.default_rng(len(fmt) * 7 + len(rounding))
    values = _grid_values(fmt, width, lsb, rng)
    draws = rng.integers(0, 1 << sr_bits, values.size)
    got = _grid(fmt, width, lsb, sr_bits, rounding, values, draws)
    expected = _golden_grid(fmt, lsb, sr_bits, rounding, values, draws)
    bad = np.flatnonzero(got != expected)
    assert not bad.size, (f"{fmt} {rounding}: value {values[bad[0]]} draw {draws[bad[0]]}: "
                          f"got {got[bad[0]]}, expected {expected[bad[0]]}")


def test_grid_rounder_can_fail():
    """The comparison above notices a wrong grid: fp16 rounding differs from e5m2's."""
    lsb = mac.product_lsb("fp4_r4")
    width = mac.accumulator_bits("fp16", chunk=16)
    values = np.array([1000, 1001, 12345, -777], dtype=np.int64)
    draws = np.zeros(values.size, dtype=np.int64)
    got = _grid("fp16", width, lsb, 8, "nearest_even", values, draws)
    assert np.array_equal(got, _golden_grid("fp16", lsb, 8, "nearest_even", values, draws))
    assert not np.array_equal(got, _golden_grid("e5m2", lsb, 8, "nearest_even", values, draws))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"fmt": "fp16", "width": 1, "lsb": -7}, ValueError,
     r"Width must be an integer of at least 2, not 1"),
    ({"fmt": "fp16", "width": 20, "lsb": -7}, ValueError,
     r"Width 20 cannot hold the largest value of fp16 in units of 2\^-7"),
    ({"fmt": "fp4_r4", "width": 20, "lsb": -7}, ValueError,
     r"Output format must be a radix-2 float format, not fp4_r4"),
    ({"fmt": "e2m1", "width": 8, "lsb": 2}, ValueError,
     r"The largest value of e2m1 is not a multiple of 2\^2"),
])
def test_grid_rounder_errors(kwargs, error, match):
    fmt = kwargs.pop("fmt")
    with pytest.raises(error, match=match):
        GridRounder(fmt, **kwargs)
