"""The formal proofs of the bit packer and unpacker, and the negative checks.

``proofs(long=False)`` lists what ``make formal`` and ``tests/test_formal.py`` run;
``long=True`` (``LOWPREC_LONG=1``) adds deeper and wider round trips.

Parameters and why (z3 through SMT-BMC is the only solver here, see ``runner.ENGINE``):

- Stream rules: k-induction (``prove``) at the frame format's word width ``W = 32`` with
  ``max_field_bits`` 8 and 32, and at ``W = 64`` (``max_field_bits`` 40); they are proved for
  all time, each in a few seconds.
- Round trip: bounded (``bmc``), depth 10 from reset, at ``W = 32`` (``max_field_bits = 8``)
  and at ``W = 8`` (``max_field_bits = 4``). The solver time grows about 3x per cycle of depth
  (depth 10: 20-40 s, 11: about 50 s, 12: minutes), hence the depth. ``W = 8`` is the more
  thorough of the two at a given depth: with fields up to half a word, ten cycles hold fields
  straddling words, two words completed by one flushed field, frame ends on and off a word
  boundary and the unpacker full (the round-trip covers show each); the logic is the same for
  every ``W`` (shifts by bit counts, word-slot counts).
"""

from .harnesses import PackerStreamHarness, RoundTripHarness, UnpackerStreamHarness
from .runner import Proof


__all__ = ["proofs"]


def _packer(**kwargs):
    return lambda: PackerStreamHarness(**kwargs)


def _unpacker(**kwargs):
    return lambda: UnpackerStreamHarness(**kwargs)


def _round_trip(**kwargs):
    return lambda: RoundTripHarness(**kwargs)


def proofs(long=False):
    items = []
    stream_configs = [(32, 8), (32, 32), (64, 40)]
    for w, f in stream_configs:
        items += [
            Proof(f"packer_stream_w{w}_f{f}", _packer(word_bits=w, max_field_bits=f),
                  "prove", 4, description="BitPacker.o: valid held, payload stable "
                                          "while stalled (k-induction)"),
            Proof(f"unpacker_stream_w{w}_f{f}", _unpacker(word_bits=w, max_field_bits=f),
                  "prove", 4, description="BitUnpacker.o: valid held, payload stable "
                                          "while stalled (k-induction)"),
        ]
    items += [
        Proof("packer_stream_cover_w32_f32", _packer(word_bits=32, max_field_bits=32),
              "cover", 8, description="BitPacker covers: word after a stall, last word "
                                      "after a stall, two words from one field"),
        Proof("unpacker_stream_cover_w32_f8", _unpacker(word_bits=32, max_field_bits=8),
              "cover", 8, description="BitUnpacker covers: field, truncated field, last "
                                      "field after a stall"),
        Proof("round_trip_w8_f4", _round_trip(word_bits=8, max_field_bits=4),
              "bmc", 10, description="BitPacker -> BitUnpacker: every field read back "
                                     "equal, last as expected, never truncated (bounded)"),
        Proof("round_trip_w32_f8", _round_trip(word_bits=32, max_field_bits=8),
              "bmc", 10, description="round trip at the frame format's W = 32 (bounded)"),
        Proof("round_trip_cover_w8_f4", _round_trip(word_bits=8, max_field_bits=4),
              "cover", 12, description="round-trip covers: straddling field, frame end on "
                                       "a field and by padding request, aligned read, "
                                       "packer held by a full unpacker"),
        # Negative checks: deliberately broken harnesses whose proofs must fail.
        # Broken designs are checked in bmc mode: the counterexample comes from the base case.
        # In prove mode sby runs base case and induction step in parallel, and when the
        # induction step reports the failed assertion first the verdict is "error", not
        # "fail" (seen once in CI).
        Proof("neg_packer_stall_corrupt", _packer(word_bits=32, max_field_bits=8,
                                                  mutation="stall_corrupt"),
              "bmc", 4, expect="fail",
              description="packer output payload flipped after a stall: must FAIL"),
        Proof("neg_round_trip_bit_flip", _round_trip(word_bits=8, max_field_bits=4,
                                                     mutation="bit_flip"),
              "bmc", 10, expect="fail",
              description="word top bit flipped between packer and unpacker: must FAIL"),
        Proof("neg_packer_unreachable_cover",
              _packer(word_bits=32, max_field_bits=8, mutation="unreachable_cover"),
              "cover", 8, expect="fail",
              description="an extra cover no trace reaches: the cover run must FAIL"),
        Proof("neg_unpacker_stall_corrupt", _unpacker(word_bits=32, max_field_bits=8,
                                                      mutation="stall_corrupt"),
              "bmc", 4, expect="fail",
              description="unpacker output payload flipped after a stall: must FAIL"),
        # A known gap, kept as a check that fails today: a frame ended by a zero-width
        # ``last`` field at a word boundary (an empty frame, or one whose previous field ended
        # on the boundary) gets an all-zero carrier word from the packer that no unpacker
        # request consumes (a zero-width align request at a boundary skips nothing), so the
        # reader comes back without ``last`` and is one word behind in the next frame. When
        # the cores agree on this case, this proof passes: drop the assumption
        # (``allow_empty_last``) from the round trip instead.
        Proof("gap_round_trip_empty_last", _round_trip(word_bits=8, max_field_bits=4,
                                                       allow_empty_last=True),
              "bmc", 10, expect="fail",
              description="known gap: zero-width last field at a word boundary; must FAIL "
                          "until the cores handle it"),
    ]
    if long:
        items += [
            Proof("round_trip_w8_f4_d11", _round_trip(word_bits=8, max_field_bits=4),
                  "bmc", 11, description="round trip, one cycle deeper (about 50 s)"),
            Proof("round_trip_w8_f4_one_hot_d12",
                  _round_trip(word_bits=8, max_field_bits=4, values="one_hot"),
                  "bmc", 12, description="round trip, one tracked bit, two cycles deeper "
                                         "(about 280 s)"),
            Proof("round_trip_w8_f8", _round_trip(word_bits=8, max_field_bits=8),
                  "bmc", 10, description="round trip, fields up to a whole word (about 65 s)"),
            Proof("round_trip_w16_f8", _round_trip(word_bits=16, max_field_bits=8),
                  "bmc", 10, description="round trip, W = 16 (about 35 s)"),
        ]
    return items
