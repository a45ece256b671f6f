"""Top-n selection: merging two ranked lists into the ``n`` highest-ranked entries.

The quantizer's collector keeps, for the block it is filling, the ``K+1`` largest magnitudes
(:mod:`golden.outliers`: ``K`` outliers and the largest of the rest, which sets the shared
exponent). Each beat's lanes are ranked by a tree of :func:`merge_top` (one level per pipeline
stage) and the beat's list is merged into the block's list once per beat. With ``K = 0`` the
lists have one entry and :func:`merge_top` is a maximum.

Equal keys are ranked by list: every entry of the first list ranks above an equal entry of
the second. The first list always holds the earlier elements (lower lanes, earlier beats), so
this is the golden model's "lower index first".
"""

from amaranth.hdl import *


__all__ = ["merge_top"]


def merge_top(m, first, second, n, at_least, *, first_valid=None, name="merged"):
    """The ``n`` highest-ranked entries of two ranked lists, highest first (combinational).

    Parameters
    ----------
    m : Module
        Where the selection logic goes.
    first, second : list of Value-castable
        Ranked lists (highest first) of entries of one layout; entries of ``first`` rank above
        equal entries of ``second``.
    n : int
        Length of the result; at most ``len(first) + len(second)``.
    at_least : callable
        ``at_least(a, b)``: a 1-bit value, true when ``a``'s key is at least ``b``'s.
    first_valid : Value or None
        When given and low, ``first`` counts as empty: the result is ``second`` followed by
        all-zero entries. (Gating the comparisons instead of the entries keeps this off the
        comparators' inputs.)

    Returns
    -------
    list of Signal, shaped like the entries (``first[0].shape()``).

    Entry ``p`` of ``first`` goes to place ``p + c``, where ``c`` counts the entries of
    ``second`` ranked above it; since both lists are ranked, whether it lands in place ``j``
    takes two comparisons, and every place is an AND-OR of the candidates for it. The
    comparisons are shared by all places: ``len(first) * len(second)`` comparators, one level
    of logic after them.
    """
    if not 1 <= n <= len(first) + len(second):
        raise ValueError(f"Result length must be between 1 and {len(first) + len(second)}, "
                         f"not {n}")
    shape = first[0].shape()
    # ahead[p][q]: first[p] ranks above second[q]
    ahead = [[Signal(name=f"{name}_ahead{p}_{q}") for q in range(len(second))]
             for p in range(len(first))]
    valid = C(1, 1) if first_valid is None else first_valid
    for p, a in enumerate(first):
        for q, b in enumerate(second):
            m.d.comb += ahead[p][q].eq(at_least(a, b) & valid)
    places = []
    for j in range(n):
        candidates = []
        for p in range(min(j + 1, len(first))):
            lands = _lands(j - p, len(second), lambda q, p=p: ~ahead[p][q])
            if lands is not None:
                candidates.append((lands & valid, first[p]))
        for q in range(min(j + 1, len(second))):
            lands = _lands(j - q, len(first), lambda p, q=q: ahead[p][q])
            if lands is not None:
                candidates.append((lands, second[q]))
        place = Signal(shape, name=f"{name}{j}")
        m.d.comb += place.eq(_any_of(candidates))
        places.append(place)
    return places


def _lands(above, others, other_above):
    """Whether an entry with exactly ``above`` of the other list's ``others`` entries ranked
    above it (``other_above(i)``: the other list's entry ``i`` is): since that list is
    ranked, its entry ``above - 1`` is and its entry ``above`` is not. None if impossible."""
    if above > others:
        return None
    lands = C(1, 1)
    if above > 0:
        lands = lands & other_above(above - 1)
    if above < others:
        lands = lands & ~other_above(above)
    return lands


def _any_of(candidates):
    """The OR of the entries whose condition holds (at most one does)."""
    width = len(Value.cast(candidates[0][1]))
    result = C(0, width)
    for lands, entry in candidates:
        result = result | (Value.cast(entry) & lands.replicate(width))
    return result
