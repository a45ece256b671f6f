"""Formal proofs (SymbiYosys from YoWASP, z3) of the bit packer and unpacker: stream rules on
every output, bounded packer -> unpacker round trip, covers, and negative checks. Run with
``make formal`` or ``python -m formal``; see :mod:`formal.proofs`."""
