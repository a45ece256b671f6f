"""8N1 UART: a receiver and a transmitter for a host link.

Frames are one start bit (low), 8 data bits LSB first and one stop bit (high); the line idles
high. Both cores run at a fixed bit time of ``divisor`` clock cycles (``divisor`` = clock
frequency / baud rate, rounded to an integer by the caller). Bytes come and go on
:mod:`amaranth.lib.stream` interfaces.
"""

from amaranth.hdl import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["UARTReceiver", "UARTTransmitter"]


def _check_divisor(divisor):
    message = f"Divisor must be an integer of at least 4, not {divisor!r}"
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(message)
    if divisor < 4:
        raise ValueError(message)


class UARTReceiver(wiring.Component):
    """8N1 UART receiver.

    The pin goes through a 2-flop synchroniser (:class:`~amaranth.lib.cdc.FFSynchronizer`,
    reset to the idle level 1). In the idle state a low synchronised sample is taken as the
    falling edge of a start bit; call its cycle ``t0``. The line is then sampled at
    ``t0 + k*divisor + (divisor - 1) // 2`` for bit ``k`` (0 = start bit, 1..8 = data bits,
    9 = stop bit), which is the middle of each bit as seen by the synchroniser: the edge and the
    samples go through the same two flops, so their latency cancels, and ``(divisor - 1) // 2``
    centres the sample on the ``divisor`` cycles of the bit (within half a cycle for an even
    divisor). A start bit that is high again at its middle (a low pulse shorter than half a bit)
    is a glitch: the receiver goes back to idle without a byte or an error.

    Latency: 3 registers from the pin to the output (2 synchroniser flops, then ``o.valid`` or
    :attr:`error`). If the pin's level at the middle of the stop bit is captured at clock edge
    ``n``, ``o.valid`` (or the :attr:`error` pulse) is high from edge ``n + 2`` on, so the byte
    can be taken at edge ``n + 3`` at the earliest.
    Against a transmitter at exactly the same rate the receiver works from ``divisor = 4``;
    the tolerated rate mismatch grows with the divisor (about +-2 % was tested at 12 and 25).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    rx : In(1)
        The receive pin, asynchronous to the clock; idles high.
    o : Out(stream.Signature(8))
        Received bytes. ``o.payload`` is held while ``o.valid`` is high, until taken with
        ``o.ready``. The output holds one byte: a byte whose stop bit completes while the
        previous one is still not taken (``o.valid`` high and ``o.ready`` low in that cycle) is
        dropped, the old one is kept, and :attr:`error` pulses (overrun).
    error : Out(1)
        One-cycle pulse when a byte is dropped: framing error (stop bit sampled low) or
        overrun. After a framing error (for instance a break, the line held low), the receiver
        waits until the line is high before it looks for the next start bit.
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx":    In(1),
            "o":     Out(stream.Signature(8)),
            "error": Out(1),
        })

    @property
    def divisor(self):
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        half = (divisor - 1) // 2           # cycles from the edge to the middle of the start bit

        line = Signal(init=1)               # the pin after the synchroniser
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(divisor))      # cycles left until the next sample
        count = Signal(range(8))            # data bits already sampled
        shift = Signal(8)                   # data bits, the latest in the MSB
        valid = Signal()
        payload = Signal(8)
        full = Signal()                     # the output still holds an untaken byte

        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.eq(payload),
            full.eq(valid & ~self.o.ready),
        ]
        with m.If(valid & self.o.ready):
            m.d.sync += valid.eq(0)
        m.d.sync += self.error.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("Idle"):
                with m.If(~line):
                    m.d.sync += timer.eq(half - 1)
                    m.next = "Start"
            with m.State("Start"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.next = "Idle"     # glitch
                    with m.Else():
                        m.d.sync += [timer.eq(divisor - 1), count.eq(0)]
                        m.next = "Data"
            with m.State("Data"):
                with m.If(timer == 0):
                    m.d.sync += [
                        timer.eq(divisor - 1),
                        shift.eq(Cat(shift[1:], line)),
                        count.eq(count + 1),
                    ]
                    with m.If(count == 7):
                        m.next = "Stop"
            with m.State("Stop"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.error.eq(1)
                        m.next = "Break"
                    with m.Elif(full):
                        m.d.sync += self.error.eq(1)
                        m.next = "Idle"
                    with m.Else():
                        m.d.sync += [payload.eq(shift), valid.eq(1)]
                        m.next = "Idle"
            with m.State("Break"):
                with m.If(line):
                    m.next = "Idle"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 UART transmitter.

    A byte taken from :attr:`i` in cycle ``c`` (``i.valid`` and ``i.ready`` high) puts its start
    bit on :attr:`tx` from cycle ``c + 1``; each bit lasts exactly ``divisor`` cycles, and the
    frame (start, 8 data bits LSB first, stop) ends after cycle ``c + 10*divisor``. ``i.ready``
    is high when idle and in the last cycle of a stop bit, so bytes offered back to back go out
    without a gap between frames.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The transmit pin, registered; high when idle (also at reset).
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "i":  In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        """Clock cycles per bit."""
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        busy = Signal()
        timer = Signal(range(divisor))      # cycles left in the current bit, minus one
        index = Signal(range(10))           # bit on the line: 0 = start, 1..8 = data, 9 = stop
        shift = Signal(9)                   # bits still to send (data, then stop), LSB first
        last = Signal()                     # the last cycle of a stop bit

        m.d.comb += [
            last.eq(busy & (index == 9) & (timer == 0)),
            self.i.ready.eq(~busy | last),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                busy.eq(1),
                self.tx.eq(0),
                shift.eq(Cat(self.i.payload, C(1, 1))),
                index.eq(0),
                timer.eq(divisor - 1),
            ]
        with m.Elif(last):
            m.d.sync += busy.eq(0)
        with m.Elif(busy & (timer == 0)):
            m.d.sync += [
                self.tx.eq(shift[0]),
                shift.eq(shift >> 1),
                index.eq(index + 1),
                timer.eq(divisor - 1),
            ]
        with m.Elif(busy):
            m.d.sync += timer.eq(timer - 1)
        return m
