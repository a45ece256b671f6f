# amaranth: UnusedElaboratable=no

"""Amaranth-simulator unit tests of hdl/codebook.py: CodebookRounder against an independent
nearest-level search done with exact fractions, and against golden.encode_codebook."""

from fractions import Fraction

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape, signed
from amaranth.sim import Simulator

import golden
from golden.codebook import LEVEL_BITS, LEVEL_FRAC_BITS, MAX_CODEBOOK_BITS
from hdl.codebook import CodebookRounder


LEVEL_UNIT = Fraction(1, 1 << LEVEL_FRAC_BITS)

#: The quantizer's exponent input: the element exponent of an fp32 value minus a shared one.
WIDE = dict(exponent_shape=signed(10), sig_bits=24)


# --- Independent references -------------------------------------------------------------------

def nearest_index(t, codes):
    """Index of the level nearest to ``t`` (exact), the lower level on a tie: an argmin over
    ``|t - level|`` that only moves on a strictly smaller distance, levels sorted."""
    best, best_distance = 0, None
    for index, code in enumerate(codes):
        distance = abs(t - code * LEVEL_UNIT)
        if best_distance is None or distance < best_distance:
            best, best_distance = index, distance
    return best


def midpoints_below(t, codes):
    """How many of the midpoints between adjacent levels (in list order, sorted or not) lie
    strictly below ``t`` (exact)."""
    return sum(t > Fraction(a + b, 2) * LEVEL_UNIT for a, b in zip(codes, codes[1:]))


# --- Values as the rounder sees them ---------------------------------------------------------

def magnitude(exponent, significand, sig_bits):
    return Fraction(significand, 1 << (sig_bits - 1)) * Fraction(2) ** exponent


def _floor_log2(v):
    e = v.numerator.bit_length() - v.denominator.bit_length()
    return e if Fraction(2) ** e <= v else e - 1


def representations(v, sig_bits):
    """``(exponent, significand)`` of the ``sig_bits``-bit values next to ``v > 0``: the
    largest at or below it, the smallest at or above it (the same when ``v`` is exact), and
    one ulp further out on each side."""
    e = _floor_log2(v)
    scaled = v / Fraction(2) ** e * (1 << (sig_bits - 1))
    low = (e, scaled.numerator // scaled.denominator)
    high = _normalise(e, -(-scaled.numerator // scaled.denominator), sig_bits)
    return {low, high, _normalise(low[0], low[1] - 1, sig_bits),
            _normalise(high[0], high[1] + 1, sig_bits)}


def _normalise(exponent, significand, sig_bits):
    if significand < 1 << (sig_bits - 1):
        return exponent - 1, (1 << sig_bits) - 1
    if significand >= 1 << sig_bits:
        return exponent + 1, 1 << (sig_bits - 1)
    return exponent, significand


def exponent_limits(exponent_shape):
    shape = Shape.cast(exponent_shape)
    return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1


def interesting(codes, sig_bits, exponent_shape):
    """Magnitudes ``(exponent, significand)`` on, next to and one bit off every midpoint, on
    and next to every level, at and around 2^-9 (the resolution of the midpoints), tiny, in
    [1, 2), at 2 and above, and zero (with arbitrary exponents, the largest included)."""
    lowest, highest = exponent_limits(exponent_shape)
    top = (1 << sig_bits) - 1
    lead = 1 << (sig_bits - 1)
    midpoints = [Fraction(a + b, 2) * LEVEL_UNIT for a, b in zip(codes, codes[1:])]
    targets = list(midpoints)
    # Just above and below a midpoint by one bit, at several depths below its last bit: the
    # only non-zero bit below it then sits at varying places of the alignment shift.
    targets += [mid + sign * LEVEL_UNIT / (1 << (1 + depth)) for mid in midpoints
                for depth in (1, 2, 3, 4, 6, 9) for sign in (1, -1)]
    targets += [code * LEVEL_UNIT for code in codes[1:]]
    targets += [Fraction(1, 1 << (LEVEL_FRAC_BITS + 1)), Fraction(1, 1 << (LEVEL_FRAC_BITS + 2)),
                Fraction(3, 1 << (LEVEL_FRAC_BITS + 2)), Fraction(1), Fraction(2)]
    values = set()
    for target in targets:
        values |= representations(target, sig_bits)
    values |= {(0, top), (0, lead), (1, lead), (1, top), (highest, top), (highest, lead),
               (lowest, lead), (lowest, top), (lowest + 1, top),
               (-LEVEL_BITS - 1, top), (-LEVEL_BITS, lead), (-LEVEL_BITS, top)}
    values |= {(e, 0) for e in (lowest, -1, 0, 1, highest)}
    return sorted((e, s) for e, s in values if lowest <= e <= highest)


def random_magnitudes(rng, count, sig_bits, exponent_shape):
    """Mostly in the codebook range and a little below it, some anywhere in the shape."""
    lowest, highest = exponent_limits(exponent_shape)
    near = rng.integers(-LEVEL_BITS - 3, 2, count)
    anywhere = rng.integers(lowest, highest + 1, count)
    exponents = np.clip(np.where(rng.random(count) < 0.85, near, anywhere), lowest, highest)
    significands = rng.integers(1 << (sig_bits - 1), 1 << sig_bits, count)
    return list(zip(exponents.tolist(), significands.tolist()))


def random_codes(rng, n_bits):
    """Level codes of a random valid codebook: 0 and ``2^N - 1`` distinct codes below 2."""
    rest = rng.choice(np.arange(1, 1 << LEVEL_BITS), (1 << n_bits) - 1, replace=False)
    return [0] + sorted(rest.tolist())


def codebook_of(codes, name="test"):
    return golden.Codebook(tuple(code * float(LEVEL_UNIT) for code in codes), name=name)


# --- Simulation ------------------------------------------------------------------------------

def simulate(dut, samples, *, seed, en_rate=0.7):
    """Codes of ``samples`` (``(sign, exponent, significand, levels or None)``), fed with
    ``en`` toggling at random (garbage on the inputs while it is low). Checks that ``code``
    holds while ``en`` is low."""
    rng = np.random.default_rng(seed)
    lowest, highest = exponent_limits(dut.exponent.shape())
    sig_bits = len(dut.significand)
    loadable = dut.codebook is None
    outputs = []

    async def testbench(ctx):
        fed = enabled = 0
        previous = None
        while len(outputs) < len(samples):
            en = bool(rng.random() < en_rate)
            if en and fed < len(samples):
                sign, exponent, significand, levels = samples[fed]
                fed += 1
            else:
                sign = int(rng.integers(2))
                exponent = int(rng.integers(lowest, highest + 1))
                significand = int(rng.integers(1 << sig_bits))
                levels = rng.integers(0, 1 << LEVEL_BITS, 1 << dut.n_bits).tolist()
            ctx.set(dut.en, en)
            ctx.set(dut.sign, sign)
            ctx.set(dut.exponent, exponent)
            ctx.set(dut.significand, significand)
            if loadable:
                ctx.set(dut.levels, levels)
            await ctx.tick()
            code = ctx.get(dut.code)
            if en:
                enabled += 1
                if enabled > CodebookRounder.LATENCY - 1:
                    outputs.append(code)
            elif previous is not None:
                assert code == previous, "the output moved while en was low"
            previous = code

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return outputs


def check(samples, got, n_bits, *, sig_bits, golden_codebooks):
    """Compare with the nearest-level reference and with golden.encode_codebook
    (``golden_codebooks``: one Codebook for all samples, or one per sample)."""
    assert len(got) == len(samples)
    bad = []
    for i, ((sign, exponent, significand, levels), code) in enumerate(zip(samples, got)):
        t = magnitude(exponent, significand, sig_bits)
        expected = sign << n_bits | nearest_index(t, levels)
        codebook = golden_codebooks if isinstance(golden_codebooks, golden.Codebook) \
            else golden_codebooks[i]
        x = -float(t) if sign else float(t)
        assert Fraction(abs(x)) == t                 # the golden model sees t exactly
        reference = int(golden.encode_codebook(np.array([x]), codebook)[0])
        assert reference == expected, f"golden and the reference differ at t = {t}"
        if code != expected:
            bad.append(f"t = {'-' if sign else ''}{float(t)!r} (exponent {exponent}, "
                       f"significand {significand:#x}), levels {levels}: got {code:#x}, "
                       f"expected {expected:#x}")
    assert not bad, f"{len(bad)} mismatches of {len(samples)}, first: " + "; ".join(bad[:5])


def fixed_samples(codes, sig_bits, exponent_shape, *, seed, count):
    rng = np.random.default_rng(seed)
    magnitudes = interesting(codes, sig_bits, exponent_shape)
    magnitudes += random_magnitudes(rng, count, sig_bits, exponent_shape)
    signs = rng.integers(0, 2, len(magnitudes)).tolist()
    # Zeros of both signs, whatever the random draw gave them.
    magnitudes += [(0, 0), (0, 0)]
    signs += [0, 1]
    return [(sign, e, s, codes) for sign, (e, s) in zip(signs, magnitudes)]


def _laplace_codebook(n_bits):
    samples = np.random.default_rng(1).laplace(size=(64, 32))
    return golden.fit_codebook(samples, n_bits)


def fixed_codebooks():
    rng = np.random.default_rng(2)
    for n in range(1, MAX_CODEBOOK_BITS + 1):
        yield pytest.param(golden.uniform(n), id=f"uniform{n}")
        yield pytest.param(golden.log(n), id=f"log{n}")
        yield pytest.param(_laplace_codebook(n), id=f"laplace{n}")
        yield pytest.param(codebook_of(random_codes(rng, n)), id=f"random{n}")


# --- Tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("codebook", list(fixed_codebooks()))
def test_fixed_codebook_fp32_significand(codebook):
    dut = CodebookRounder(codebook.n_bits, codebook=codebook, **WIDE)
    codes = list(codebook.level_codes)
    samples = fixed_samples(codes, WIDE["sig_bits"], WIDE["exponent_shape"], seed=codebook.n_bits,
                            count=400)
    # Every midpoint is exact in 24 bits: the ties are all there.
    midpoints = {Fraction(a + b, 2) * LEVEL_UNIT for a, b in zip(codes, codes[1:])}
    exact = {magnitude(e, s, WIDE["sig_bits"]) for _, e, s, _ in samples}
    assert midpoints <= exact
    got = simulate(dut, samples, seed=codebook.n_bits)
    check(samples, got, codebook.n_bits, sig_bits=WIDE["sig_bits"], golden_codebooks=codebook)


@pytest.mark.parametrize("codebook,sig_bits,exponent_shape", [
    (golden.log(3), 4, signed(6)),
    (golden.uniform(4), 4, range(-16, 8)),
    (golden.log(4), 1, signed(5)),
    (golden.uniform(2), 11, signed(4)),       # exponents never reach below 2^-9
    (golden.log(2), 53, signed(10)),      # fp64: the widest sticky
])
def test_fixed_codebook_other_widths(codebook, sig_bits, exponent_shape):
    dut = CodebookRounder(codebook.n_bits, codebook=codebook, exponent_shape=exponent_shape,
                          sig_bits=sig_bits)
    codes = list(codebook.level_codes)
    samples = fixed_samples(codes, sig_bits, exponent_shape, seed=sig_bits, count=150)
    got = simulate(dut, samples, seed=sig_bits)
    check(samples, got, codebook.n_bits, sig_bits=sig_bits, golden_codebooks=codebook)


def loadable_samples(n_bits, sig_bits, exponent_shape, *, seed, count):
    """A new codebook every value (random, uniform or log), the value often on or next to one
    of its midpoints."""
    rng = np.random.default_rng(seed)
    fixed = [list(golden.uniform(n_bits).level_codes), list(golden.log(n_bits).level_codes)]
    randoms = random_magnitudes(rng, count, sig_bits, exponent_shape)
    samples = []
    for index in range(count):
        choice = rng.random()
        codes = fixed[int(rng.integers(2))] if choice < 0.2 else random_codes(rng, n_bits)
        if rng.random() < 0.6:
            candidates = interesting(codes, sig_bits, exponent_shape)
            exponent, significand = candidates[int(rng.integers(len(candidates)))]
        else:
            exponent, significand = randoms[index]
        samples.append((int(rng.integers(2)), exponent, significand, codes))
    return samples


@pytest.mark.parametrize("n_bits,sig_bits,exponent_shape", [
    (1, 24, signed(10)),
    (2, 24, signed(10)),
    (3, 24, signed(10)),
    (4, 24, signed(10)),
    (4, 4, signed(6)),
    (3, 4, range(-12, 3)),
])
def test_loadable_levels_change_every_cycle(n_bits, sig_bits, exponent_shape):
    dut = CodebookRounder(n_bits, exponent_shape=exponent_shape, sig_bits=sig_bits)
    samples = loadable_samples(n_bits, sig_bits, exponent_shape, seed=10 * n_bits + sig_bits,
                               count=1000)
    got = simulate(dut, samples, seed=n_bits)
    check(samples, got, n_bits, sig_bits=sig_bits,
          golden_codebooks=[codebook_of(levels) for *_, levels in samples])


def test_loadable_unsorted_levels_are_counted():
    """Unsorted run-time levels (repeats allowed): the index is the count of midpoints, taken
    pairwise in port order, strictly below t."""
    n_bits, sig_bits = 3, 24
    rng = np.random.default_rng(7)
    dut = CodebookRounder(n_bits, **WIDE)
    samples = []
    for _ in range(300):
        levels = rng.integers(0, 1 << LEVEL_BITS, 1 << n_bits).tolist()
        candidates = interesting(levels, sig_bits, WIDE["exponent_shape"])
        exponent, significand = candidates[int(rng.integers(len(candidates)))]
        samples.append((int(rng.integers(2)), exponent, significand, levels))
    got = simulate(dut, samples, seed=7)
    expected = [sign << n_bits | midpoints_below(magnitude(e, s, sig_bits), levels)
                for sign, e, s, levels in samples]
    assert got == expected


def test_enable_always_high_and_rarely_high():
    """The same results whether the pipeline streams (en always high) or crawls."""
    codebook = golden.log(4)
    codes = list(codebook.level_codes)
    samples = fixed_samples(codes, 24, signed(10), seed=3, count=60)
    for en_rate in (1.0, 0.15):
        got = simulate(CodebookRounder(4, codebook=codebook, **WIDE), samples, seed=3,
                       en_rate=en_rate)
        check(samples, got, 4, sig_bits=24, golden_codebooks=codebook)


@pytest.mark.parametrize("codebook", [None, golden.log(4)], ids=["loadable", "fixed"])
def test_elaborates_to_verilog(codebook):
    dut = CodebookRounder(4, exponent_shape=signed(10), sig_bits=24, codebook=codebook)
    text = verilog.convert(dut, name="top")
    assert "module top" in text
    assert ("levels" in text) == (codebook is None)


def test_ports_and_latency():
    loadable = CodebookRounder(3, exponent_shape=signed(10), sig_bits=24)
    fixed = CodebookRounder(3, exponent_shape=range(-20, 5), sig_bits=4,
                            codebook=golden.uniform(3))
    assert isinstance(CodebookRounder.LATENCY, int)
    assert loadable.LATENCY == fixed.LATENCY == CodebookRounder.LATENCY
    assert len(loadable.code) == len(fixed.code) == 4
    assert len(loadable.levels.as_value()) == 8 * LEVEL_BITS
    assert "levels" not in fixed.signature.members
    assert fixed.exponent.shape() == Shape.cast(range(-20, 5))
    assert len(fixed.significand) == 4


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="Codebook index width must be between 1 and 4 bits"):
        CodebookRounder(0, **WIDE)
    with pytest.raises(ValueError, match="Codebook index width must be between 1 and 4 bits"):
        CodebookRounder(5, **WIDE)
    with pytest.raises(ValueError, match="Codebook index width must be between 1 and 4 bits"):
        CodebookRounder(True, **WIDE)
    with pytest.raises(TypeError, match="Exponent shape must be signed, not unsigned"):
        CodebookRounder(2, exponent_shape=8, sig_bits=24)
    with pytest.raises(TypeError, match="Exponent shape must be a signed shape, not 'wide'"):
        CodebookRounder(2, exponent_shape="wide", sig_bits=24)
    with pytest.raises(ValueError, match="Significand width must be a positive integer, not 0"):
        CodebookRounder(2, exponent_shape=signed(10), sig_bits=0)
    with pytest.raises(ValueError, match="Significand width must be a positive integer, not 2.5"):
        CodebookRounder(2, exponent_shape=signed(10), sig_bits=2.5)
    with pytest.raises(TypeError, match=r"Codebook must be None or a Codebook, not \[0, 1\]"):
        CodebookRounder(1, codebook=[0, 1], **WIDE)
    with pytest.raises(ValueError, match=r"Codebook log3 has 8 levels \(3 index bits\), not "
                                         r"the 16 of an index width of 4"):
        CodebookRounder(4, codebook=golden.log(3), **WIDE)
    with pytest.raises(TypeError):
        CodebookRounder(2, signed(10), 24)    # only n_bits is positional
