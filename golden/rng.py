"""The random bits of stochastic rounding.

The generator is a 127-bit Fibonacci LFSR with the primitive trinomial ``x^127 + x + 1``
(period ``2^127 - 1``). It produces one bit sequence ``b[0], b[1], ...`` with

    b[n + 127] = b[n + 1] XOR b[n]

Seeding: for a 32-bit ``seed``, ``s = mix_seed(seed)`` (Thomas Wang's 32-bit integer hash, so
that nearby seeds give unrelated streams) and ``b[32i + k] = rotl(s, SEED_ROTATIONS[i])[k] XOR
PI_BITS[32i + k]`` for ``32i + k = 0..126``,
where ``PI_BITS`` are the bits of the constant ``0x243F6A8885A308D313198A2E03707344`` (the
first hexadecimal digits of the fractional part of pi, bit ``j`` being ``(K >> j) & 1``).
The state is never all-zero: that would need the 127 constant bits to equal four rotations
of one 32-bit word, and they do not (checked in the tests).

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


__all__ = ["LFSR_DEGREE", "LFSR_TAP", "SEED_CONSTANT", "SEED_ROTATIONS", "mix_seed", "initial_state", "lfsr_bits",
           "draws"]


LFSR_DEGREE   = 127
LFSR_TAP      = 1
SEED_CONSTANT = 0x243F6A8885A308D313198A2E03707344


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"Seed must be an integer, not {seed!r}")
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f"Seed must be an integer between 0 and 2**32-1, not {seed}")
    return int(seed)


def mix_seed(seed):
    """Thomas Wang's 32-bit integer hash (multiplier-free, a bijection), so that nearby seeds
    start the generator from unrelated states (``hdl.rng.SeedMixer``)."""
    key = _check_seed(seed)
    mask = 0xFFFF_FFFF
    key = (~key + (key << 15)) & mask
    key ^= key >> 12
    key = (key + (key << 2)) & mask
    key ^= key >> 4
    key = (key + (key << 3) + (key << 11)) & mask
    key ^= key >> 16
    return key


#: The seed's hash fills the state 32 bits at a time, rotated left by these amounts: a state
#: made of four equal words would lie close to a subspace that the LFSR maps into itself,
#: so that streams of different seeds would agree for hundreds of thousands of draws.
SEED_ROTATIONS = (0, 5, 11, 19)


def _rotated(word, amount):
    return ((word << amount) | (word >> (32 - amount))) & 0xFFFF_FFFF if amount else word


def initial_state(seed):
    """The first 127 bits ``b[0..126]`` as a Python integer (bit ``j`` is ``b[j]``)."""
    mixed = mix_seed(seed)
    words = [_rotated(mixed, amount) for amount in SEED_ROTATIONS]
    state = 0
    for j in range(LFSR_DEGREE):
        bit = ((words[j // 32] >> (j % 32)) & 1) ^ ((SEED_CONSTANT >> j) & 1)
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


def _check_count(count):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"Count must be a non-negative integer, not {count!r}")
    return int(count)


def check_sr_bits(sr_bits):
    """``sr_bits`` as an int, or ValueError naming it."""
    if isinstance(sr_bits, bool) or not isinstance(sr_bits, (int, np.integer)) \
            or not 1 <= sr_bits <= 24:
        raise ValueError(f"Stochastic rounding bits must be an integer between 1 and 24, "
                         f"not {sr_bits!r}")
    return int(sr_bits)


def lfsr_bits(seed, count):
    """The first ``count`` bits of the sequence as a uint8 array of 0/1."""
    _check_seed(seed)
    count = _check_count(count)
    if count <= 64 * LFSR_DEGREE:
        return _first_bits(seed, count)
    words = _words(seed, -(-count // 64))
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:count]


def draws(seed, count, sr_bits):
    """The first ``count`` draws of ``sr_bits`` bits each, as a uint32 array."""
    _check_seed(seed)
    sr_bits = check_sr_bits(sr_bits)
    return _draws(seed, _check_count(count), sr_bits).astype(np.uint32, copy=False)


def _draws(seed, count, sr_bits):
    """:func:`draws` without checks, as uint8 (``R = 8``), uint16 (``R = 16``) or uint32."""
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    if sr_bits in (8, 16):
        words = _words(seed, max(-(-count * sr_bits // 64), 1))
        return words.view("<u1" if sr_bits == 8 else "<u2")[:count]
    # Every 8 draws take exactly R bytes: draw 8i + j starts at bit j*R of bytes
    # R*i .. R*i + R - 1, and (j*R mod 8) + R <= 31 bits lie within the little-endian 32-bit
    # word starting at byte floor(j*R / 8).
    groups = -(-count // 8)
    words = _words(seed, -(-(groups * sr_bits + 4) // 8))
    stream = words.view(np.uint8)
    offsets = np.array([j * sr_bits % 8 for j in range(8)], np.uint32)
    out = np.empty((groups, 8), np.uint32)
    for start in range(0, groups, 1 << 14):          # in chunks that stay in the cache
        chunk = out[start:start + (1 << 14)]
        for j in range(8):
            chunk[:, j] = np.ndarray((len(chunk),), "<u4", stream,
                                     start * sr_bits + j * sr_bits // 8, (sr_bits,))
        chunk >>= offsets
        chunk &= (1 << sr_bits) - 1
    return out.reshape(-1)[:count]
