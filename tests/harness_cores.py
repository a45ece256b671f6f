"""Tiny cores that exercise the cocotb stream harness (`sim`), including broken ones."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["AdderIn", "AdderOut", "PipelinedAdder", "NeverValid", "adder_reference"]


AdderIn = data.StructLayout({"a": 8, "b": 8, "last": 1})
AdderOut = data.StructLayout({"sum": 10, "last": 1})


def adder_reference(beats, cfgs):
    """Expected output of :class:`PipelinedAdder`: dicts ``{"sum", "last"}`` for input dicts
    ``{"a", "b", "last"}`` and the ``cfg`` value in force for each beat."""
    return [{"sum": beat["a"] + beat["b"] + cfg, "last": beat["last"]}
            for beat, cfg in zip(beats, cfgs)]


class PipelinedAdder(wiring.Component):
    """Two-stage pipelined adder, ``o.sum = i.a + i.b + cfg``, with full backpressure.

    Parameters
    ----------
    bug : ``None``, ``"drop"`` or ``"corrupt"``
        Deliberate defect, to check that the harness catches it. ``"drop"``: the output stage
        loads a new beat even while its beat is stalled (beats are lost under backpressure).
        ``"corrupt"``: the output payload changes while its beat is stalled (a protocol error).

    Members
    -------
    i : ``In(stream.Signature(AdderIn))``
        Operands; ``last`` is passed through.
    o : ``Out(stream.Signature(AdderOut))``
        Sums, two cycles after acceptance when not stalled; one beat a cycle at full rate.
    cfg : ``In(8)``
        Offset added to every sum, sampled with each accepted input beat.
    """
    def __init__(self, *, bug=None):
        if bug not in (None, "drop", "corrupt"):
            raise ValueError(f"Bug must be None, 'drop' or 'corrupt', not {bug!r}")
        self._bug = bug
        super().__init__({
            "i": In(stream.Signature(AdderIn)),
            "o": Out(stream.Signature(AdderOut)),
            "cfg": In(8),
        })

    def elaborate(self, platform):
        m = Module()

        s1_valid = Signal()
        s1_data = Signal(AdderOut)
        s1_ready = Signal()
        s2_ready = Signal()

        # Handshakes are plain assignments (Icarus and comb outputs assigned in `m.If`).
        if self._bug == "drop":
            m.d.comb += s2_ready.eq(1)
        else:
            m.d.comb += s2_ready.eq(~self.o.valid | self.o.ready)
        m.d.comb += [
            s1_ready.eq(~s1_valid | s2_ready),
            self.i.ready.eq(s1_ready),
        ]

        with m.If(s1_ready):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_data.sum.eq(self.i.payload.a + self.i.payload.b + self.cfg),
                s1_data.last.eq(self.i.payload.last),
            ]
        with m.If(s2_ready):
            m.d.sync += [
                self.o.valid.eq(s1_valid),
                self.o.payload.eq(s1_data),
            ]
        if self._bug == "corrupt":
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += self.o.payload.sum.eq(self.o.payload.sum + 1)

        return m


class NeverValid(wiring.Component):
    """Accepts every input beat and never produces an output (a deadlocked core).

    Members
    -------
    i : ``In(stream.Signature(AdderIn))``
        Ignored.
    o : ``Out(stream.Signature(AdderOut))``
        Never valid.
    """
    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(AdderIn)),
            "o": Out(stream.Signature(AdderOut)),
        })

    def elaborate(self, platform):
        m = Module()
        counter = Signal(8)  # something clocked, so that the design has a sync domain
        m.d.sync += counter.eq(counter + self.i.valid)
        m.d.comb += [
            self.i.ready.eq(1),
            self.o.valid.eq(0),
            self.o.payload.eq(counter),
        ]
        return m
