"""Random bits for stochastic rounding: the hardware of :mod:`golden.rng`.

The state register holds 127 consecutive bits ``b[n..n+126]`` of the LFSR sequence
``b[k+127] = b[k+1] XOR b[k]``. A beat of ``lanes`` elements takes the draws from the bits
``b[n .. n + lanes*R - 1]`` and moves the state on by ``lanes*R`` bits. Every bit needed is a
fixed XOR of state bits, worked out here at elaboration time.
"""

from amaranth.hdl import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.rng import LFSR_DEGREE, LFSR_TAP, SEED_CONSTANT, SEED_ROTATIONS, check_sr_bits


__all__ = ["StochasticDraws", "SeedMixer"]


def _sequence_masks(count):
    """For ``i < count``: the set of state bits (as an int mask) whose XOR is ``b[n + i]``."""
    masks = [1 << i for i in range(LFSR_DEGREE)]
    while len(masks) < count:
        i = len(masks)
        masks.append(masks[i - LFSR_DEGREE + LFSR_TAP] ^ masks[i - LFSR_DEGREE])
    return masks[:count]


def _xor_of(state, mask):
    terms = [state[i] for i in range(LFSR_DEGREE) if (mask >> i) & 1]
    result = terms[0]
    for term in terms[1:]:
        result = result ^ term
    return result


class StochasticDraws(wiring.Component):
    """One ``sr_bits``-bit draw per lane per beat, from the generator of :mod:`golden.rng`.

    Parameters
    ----------
    lanes : int
        Draws per beat.
    sr_bits : int
        Bits per draw.

    Attributes
    ----------
    seed : In(32)
        Seed used when :attr:`restart` is high, already hashed by :class:`SeedMixer`.
    restart : In(1)
        This beat is the first of a frame: its draws come from the freshly seeded sequence.
    advance : In(1)
        The beat's draws are used; the next beat gets the following ones.
    draws : Out(ArrayLayout(sr_bits, lanes))
        Draws of the current beat (combinational): lane ``l`` gets draw ``n*lanes + l``.
    """

    def __init__(self, *, lanes, sr_bits):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Lane count must be a positive integer, not {lanes!r}")
        check_sr_bits(sr_bits)
        self._lanes = lanes
        self._sr_bits = sr_bits
        super().__init__({
            "seed":    In(32),
            "restart": In(1),
            "advance": In(1),
            "draws":   Out(data.ArrayLayout(sr_bits, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        used = self._lanes * self._sr_bits
        state = Signal(LFSR_DEGREE)
        seeded = Signal(LFSR_DEGREE)
        current = Signal(LFSR_DEGREE)
        words = [self.seed.rotate_left(amount) for amount in SEED_ROTATIONS]
        m.d.comb += seeded.eq(Cat(words[j // 32][j % 32] ^ ((SEED_CONSTANT >> j) & 1)
                                  for j in range(LFSR_DEGREE)))
        m.d.comb += current.eq(Mux(self.restart, seeded, state))
        masks = _sequence_masks(used + LFSR_DEGREE)
        m.d.comb += self.draws.as_value().eq(Cat(_xor_of(current, masks[i]) for i in range(used)))
        with m.If(self.advance):
            m.d.sync += state.eq(Cat(_xor_of(current, masks[used + i])
                                     for i in range(LFSR_DEGREE)))
        return m


class SeedMixer(wiring.Component):
    """Thomas Wang's 32-bit integer hash of the seed (:func:`golden.rng.mix_seed`), so that
    nearby seeds (0, 1, 2, ...) start the generator from unrelated states; pipelined.

    Attributes
    ----------
    en : In(1)
        Advance the pipeline by one stage.
    seed : In(32)
        The seed (sampled when ``en`` is high).
    mixed : Out(32)
        Its hash, :attr:`LATENCY` advances later.
    """

    LATENCY = 4

    def __init__(self):
        super().__init__({
            "en":    In(1),
            "seed":  In(32),
            "mixed": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        key = self.seed
        first = Signal(32)
        second = Signal(32)
        partial = Signal(32)                # second + (second << 3)
        kept = Signal(32)                   # second, one stage on
        sum1 = Signal(32)
        sum2 = Signal(32)
        sum3 = Signal(32)
        m.d.comb += [
            sum1.eq(~key + (key << 15)),
            sum2.eq(first + (first << 2)),
            sum3.eq(partial + (kept << 11)),
        ]
        with m.If(self.en):
            m.d.sync += [
                first.eq(sum1 ^ (sum1 >> 12)),
                second.eq(sum2 ^ (sum2 >> 4)),
                partial.eq(second + (second << 3)),
                kept.eq(second),
                self.mixed.eq(sum3 ^ (sum3 >> 16)),
            ]
        return m
