"""``hdl.topk.merge_top`` in the Amaranth simulator against Python's sort: every pair of list
lengths up to 5 (K = 4), every result length, many random ranked lists with repeated keys
(ties must rank the first list's entries ahead, then by position)."""

import itertools
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from hdl.topk import merge_top


ENTRY = data.StructLayout({"key": 3, "tag": 4})


def _check(first_length, second_length, n, trials=60):
    m = Module()
    first = [Signal(ENTRY, name=f"a{i}") for i in range(first_length)]
    second = [Signal(ENTRY, name=f"b{i}") for i in range(second_length)]
    merged = merge_top(m, first, second, n, lambda a, b: a.key >= b.key)
    sim = Simulator(m)

    async def testbench(ctx):
        rs = random.Random(first_length * 100 + second_length * 10 + n)
        for _ in range(trials):
            # few key values, so that ties are common
            keys_a = sorted((rs.randrange(5) for _ in range(first_length)), reverse=True)
            keys_b = sorted((rs.randrange(5) for _ in range(second_length)), reverse=True)
            for i, key in enumerate(keys_a):
                ctx.set(first[i], {"key": key, "tag": i})
            for i, key in enumerate(keys_b):
                ctx.set(second[i], {"key": key, "tag": 8 + i})
            # rank: larger key first; on equal keys the first list, then the lower position
            ranked = sorted([(-key, 0, i) for i, key in enumerate(keys_a)] +
                            [(-key, 1, i) for i, key in enumerate(keys_b)])[:n]
            expected = [(-key, 8 * which + i) for key, which, i in ranked]
            got = [(ctx.get(place.key), ctx.get(place.tag)) for place in merged]
            assert got == expected, (keys_a, keys_b)

    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("first_length, second_length",
                         list(itertools.product(range(1, 6), range(1, 6))))
def test_merge_top(first_length, second_length):
    for n in range(1, min(5, first_length + second_length) + 1):
        _check(first_length, second_length, n)


def test_merge_top_length_checked():
    m = Module()
    entries = [Signal(ENTRY) for _ in range(3)]
    with pytest.raises(ValueError, match=r"Result length must be between 1 and 3, not 4"):
        merge_top(m, entries[:1], entries[1:], 4, lambda a, b: a.key >= b.key)


def test_merge_top_with_first_list_invalid():
    """``first_valid`` low: the result is the second list, then empty (all-zero) places."""
    m = Module()
    first = [Signal(ENTRY, name=f"a{i}") for i in range(3)]
    second = [Signal(ENTRY, name=f"b{i}") for i in range(2)]
    valid = Signal(init=1)
    merged = merge_top(m, first, second, 4, lambda a, b: a.key >= b.key, first_valid=valid)
    sim = Simulator(m)

    async def testbench(ctx):
        for i, key in enumerate((7, 5, 1)):
            ctx.set(first[i], {"key": key, "tag": i})
        for i, key in enumerate((6, 2)):
            ctx.set(second[i], {"key": key, "tag": 8 + i})
        got = [(ctx.get(place.key), ctx.get(place.tag)) for place in merged]
        assert got == [(7, 0), (6, 8), (5, 1), (2, 9)]
        ctx.set(valid, 0)
        got = [(ctx.get(place.key), ctx.get(place.tag)) for place in merged]
        assert got == [(6, 8), (2, 9), (0, 0), (0, 0)]

    sim.add_testbench(testbench)
    sim.run()
