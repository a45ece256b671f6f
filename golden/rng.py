"""The random bits of stochastic rounding.

The generator is a 127-bit Fibonacci LFSR with the primitive trinomial ``x^127 + x + 1``
(period ``2^127 - 1``). It produces one bit sequence ``b[0], b[1], ...`` with

    b[n + 127] = b[n + 1] XOR b[n]

Seeding: for a 32-bit ``seed``, ``b[j] = seed[j mod 32] XOR PI_BITS[j]`` for ``j = 0..126``,
where ``PI_BITS`` are the bits of the constant ``0x243F6A8885A308D313198A2E03707344`` (the
first hexadecimal digits of the fractional part of pi, bit ``j`` being ``(K >> j) & 1``).
The state can never be all-zero because the constant's top bits differ from any periodic
32-bit pattern.

Draws: element ``n`` of a stream (in stream order, every element, including zeros, NaNs and
padding, takes one draw) uses the ``R = sr_bits`` bits ``b[n*R .. n*R + R - 1]``, the first
of them being the least significant: ``draw[n] = sum(b[n*R + j] << j)``. The sequence starts
afresh from the seed at the start of every call (golden) and of every frame (hardware).

This is also what ``hdl/rng.py`` implements: there the state register holds 127 consecutive
bits of the sequence and advances by ``lanes * R`` bits per beat, all new bits being XORs of
state bits (for up to 126 new bits per beat, each is an XOR of two), so any number of lanes
costs a few LUTs per random bit.
"""

import numpy as np


__all__ = ["LFSR_DEGREE", "LFSR_TAP", "SEED_CONSTANT", "initial_state", "lfsr_bits", "draws"]


LFSR_DEGREE   = 127
LFSR_TAP      = 1
SEED_CONSTANT = 0x243F6A8885A308D313198A2E03707344


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"Seed must be an integer, not {seed!r}")
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f"Seed must be an integer between 0 and 2**32-1, not {seed}")
    return int(seed)


def initial_state(seed):
    """The first 127 bits ``b[0..126]`` as a Python integer (bit ``j`` is ``b[j]``)."""
    seed = _check_seed(seed)
    state = 0
    for j in range(LFSR_DEGREE):
        bit = ((seed >> (j % 32)) & 1) ^ ((SEED_CONSTANT >> j) & 1)
        state |= bit << j
    return state


def _first_bits(seed, count):
    """``b[0..count-1]`` as a uint8 array of 0/1, computed 126 bits per step."""
    state = initial_state(seed)
    bits = np.zeros(max(count, LFSR_DEGREE), dtype=np.uint8)
    bits[:LFSR_DEGREE] = [(state >> j) & 1 for j in range(LFSR_DEGREE)]
    have = LFSR_DEGREE
    while have < count:
        step = min(LFSR_DEGREE - LFSR_TAP, count - have)
        base = have - LFSR_DEGREE
        bits[have:have + step] = bits[base + LFSR_TAP:base + LFSR_TAP + step] ^ bits[base:base + step]
        have += step
    return bits[:count]


def _words(seed, count):
    """The sequence as ``count`` little-endian 64-bit words (word ``w`` holds ``b[64w..64w+63]``).

    Because ``(x^127 + x + 1)^(2^k) = x^(127*2^k) + x^(2^k) + 1``, the sequence also obeys
    ``b[n + 127*2^k] = b[n + 2^k] XOR b[n]``; with ``2^k = 64*j`` the words obey
    ``W[w + 127*j] = W[w + j] XOR W[w]``, which fills the array in O(log count) NumPy steps.
    """
    head = _first_bits(seed, 64 * LFSR_DEGREE)
    words = np.zeros(max(count, LFSR_DEGREE), dtype="<u8")
    words[:LFSR_DEGREE] = np.packbits(head, bitorder="little").view("<u8")
    have = LFSR_DEGREE
    while have < count:
        j = 1
        while LFSR_DEGREE * j * 2 <= have:
            j *= 2
        step = min((LFSR_DEGREE - 1) * j, count - have)
        lo = have - LFSR_DEGREE * j
        words[have:have + step] = words[lo + j:lo + j + step] ^ words[lo:lo + step]
        have += step
    return words[:count]


def lfsr_bits(seed, count):
    """The first ``count`` bits of the sequence as a uint8 array of 0/1."""
    if count <= 64 * LFSR_DEGREE:
        return _first_bits(seed, count)
    words = _words(seed, -(-count // 64))
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:count]


def draws(seed, count, sr_bits):
    """The first ``count`` draws of ``sr_bits`` bits each, as a uint32 array."""
    _check_seed(seed)
    if not isinstance(sr_bits, (int, np.integer)) or not 1 <= sr_bits <= 24:
        raise ValueError(f"Stochastic rounding bits must be an integer between 1 and 24, "
                         f"not {sr_bits!r}")
    count = int(count)
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    nbits = count * sr_bits
    words = _words(seed, max(-(-nbits // 64), 1))
    if sr_bits in (8, 16):
        dtype = "<u1" if sr_bits == 8 else "<u2"
        return words.view(dtype)[:count].astype(np.uint32)
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:nbits]
    weights = (1 << np.arange(sr_bits, dtype=np.uint32)).astype(np.uint32)
    return bits.reshape(count, sr_bits).astype(np.uint32) @ weights
