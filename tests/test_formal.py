# amaranth: UnusedElaboratable=no
"""Formal proofs of BitPacker and BitUnpacker with SymbiYosys (``yowasp-sby``, z3): the stream
rules on every output (k-induction), the bounded packer -> unpacker round trip, the covers that
show neither is vacuous, and negative checks: deliberately broken harnesses whose proofs must
FAIL, so that a passing proof means something. The same list as ``make formal``
(``formal.proofs``); ``LOWPREC_LONG=1`` adds the deeper round trips. About 45 s in CI.
"""

import pytest

from formal.harnesses import PackerStreamHarness, RoundTripHarness, UnpackerStreamHarness
from formal.proofs import proofs
from formal.runner import Proof, SbyUnavailable, failed_properties, find_tools, run_proof, \
    sby_text, write_job
from references import LONG


try:
    find_tools()
    _MISSING = None
except SbyUnavailable as exc:
    _MISSING = str(exc)

needs_sby = pytest.mark.skipif(_MISSING is not None,
                               reason=f"formal tools unavailable: {_MISSING}")

PROOFS = proofs(long=LONG)


def test_negative_checks_are_listed():
    # The proofs cannot pass vacuously if some must fail: at least one stream and one
    # round-trip negative check run in CI.
    negative = [p for p in proofs(long=False) if p.expect == "fail"]
    assert any(p.name.startswith("neg_packer") for p in negative)
    assert any(p.name.startswith("neg_round_trip") for p in negative)
    modes = {p.mode for p in proofs(long=False) if p.expect == "pass"}
    assert modes == {"prove", "bmc", "cover"}


def test_parameter_errors():
    with pytest.raises(ValueError, match=r"^Unknown packer stream mutation 'x'$"):
        PackerStreamHarness(word_bits=8, max_field_bits=4, mutation="x")
    with pytest.raises(ValueError, match=r"^Unknown unpacker stream mutation 'bit_flip'$"):
        UnpackerStreamHarness(word_bits=8, max_field_bits=4, mutation="bit_flip")
    with pytest.raises(ValueError, match=r"^Values must be 'free' or 'one_hot', not 'zero'$"):
        RoundTripHarness(word_bits=8, max_field_bits=4, values="zero")
    with pytest.raises(ValueError, match=r"^Mode must be one of 'prove', 'bmc', 'cover', "
                                         r"not 'sim'$"):
        Proof("x", None, "sim", 1)


def test_job_files(tmp_path):
    proof = Proof("job", lambda: RoundTripHarness(word_bits=8, max_field_bits=4), "bmc", 7)
    sby = write_job(proof, tmp_path)
    text = sby.read_text()
    assert "mode bmc\ndepth 7\n" in text and "read_rtlil top.il" in text
    assert text == sby_text("bmc", 7)
    il = (sby.parent / "top.il").read_text()
    # Every property reaches the RTLIL as a $check cell of the right flavour.
    assert il.count('\\FLAVOR "assert"') == 4
    assert il.count('\\FLAVOR "cover"') == 5


@needs_sby
@pytest.mark.slow
@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_proof(proof, tmp_path):
    result = run_proof(proof, tmp_path, timeout=900)
    detail = "\n".join(failed_properties(result.log)) or result.log[-2000:]
    assert result.status == proof.expect, (
        f"{proof.name} ({proof.mode}, depth {proof.depth}): sby says {result.status}, "
        f"expected {proof.expect}\n{detail}")
    if proof.expect == "fail":
        # A negative check must fail on an assertion (or an unreached cover), not on an
        # error of the flow.
        why = "Unreached cover" if proof.mode == "cover" else "Assert failed"
        assert any(why in line for line in failed_properties(result.log))
    elif proof.mode == "cover":
        assert "Unreached cover" not in result.log
