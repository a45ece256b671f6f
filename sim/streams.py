"""cocotb 2 drivers, monitors and a scoreboard for ``amaranth.lib.stream`` ports.

A stream port ``<prefix>`` of the Verilog top level is the triple ``<prefix>__valid``,
``<prefix>__ready`` and ``<prefix>__payload`` (a packed vector).

Timing model: :meth:`StreamDriver.sample` and :meth:`StreamSink.sample` are called right after
a rising edge of the clock and read the values the design saw *at* that edge (cocotb resumes
``RisingEdge`` before the clocked logic updates, on Icarus and on Verilator alike; the
testbench checks this). :meth:`~StreamDriver.drive` then sets the inputs for the next edge.
:func:`run_streams` does both for a driver and a sink in a single coroutine, with one trigger per
clock cycle, which is what makes long runs fast.
"""

import random

from cocotb.triggers import RisingEdge


__all__ = ["StreamDriver", "StreamSink", "Scoreboard", "StreamTimeout", "IdleWatchdog",
           "run_streams"]


class StreamTimeout(AssertionError):
    """A stream run exceeded its cycle bound (a deadlock, or too small a bound)."""


def _check_prob(name, value):
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 0.9:
        raise ValueError(f"{name} must be a probability between 0 and 0.9, not {value!r}")
    return float(value)


def _port(dut, prefix, member):
    name = f"{prefix}__{member}"
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(f"The design has no port {name!r} (stream prefix {prefix!r})") \
            from None


def _rng(rng):
    if rng is None:
        return random.Random(0)
    if isinstance(rng, int):
        return random.Random(rng)
    if not hasattr(rng, "random"):
        raise TypeError(f"Random generator must be an int seed or have a random() method, "
                        f"not {rng!r}")
    return rng


class StreamDriver:
    """Drives beats into a stream input of the design.

    Obeys the stream rules: ``valid`` goes high only with a beat to send, and once high it is held,
    with a stable payload, until the design asserts ``ready``. Between beats, ``valid`` stays low
    for a cycle with probability *stall_prob*, independently per cycle.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    prefix : :class:`str`
        Name of the stream port; ``"i"`` drives ``i__valid`` and ``i__payload``.
    clk : cocotb handle or ``None``
        Clock, for :meth:`run` (default ``dut.clk``).
    stall_prob : :class:`float`
        Probability (0 to 0.9) of an idle cycle before presenting each beat.
    rng : :class:`random.Random`, :class:`int` or ``None``
        Source of the stalls, or its seed.

    Attributes
    ----------
    accepted : :class:`int`
        Number of beats the design accepted.
    first_valid_cycle : :class:`int` or ``None``
        Cycle number (see :meth:`drive`) after which ``valid`` first went high.
    """
    def __init__(self, dut, prefix="i", *, clk=None, stall_prob=0.0, rng=None):
        self._dut = dut
        self.prefix = prefix
        self._valid = _port(dut, prefix, "valid")
        self._ready = _port(dut, prefix, "ready")
        self._payload = _port(dut, prefix, "payload")
        self.clk = dut.clk if clk is None else clk
        self.stall_prob = _check_prob("Stall probability", stall_prob)
        self._rng = _rng(rng)
        self._beats = []
        self._side = {}
        self._side_ports = {}
        self._driving = False   # value of valid during the current cycle
        self._fire = False
        self.accepted = 0
        self.first_valid_cycle = None
        self._valid.value = 0

    def send(self, beats, side=None):
        """Queue payloads (ints) to send.

        *side* maps the index of a beat, counted from the first beat ever queued, to
        ``{port_name: int}``: those ports are set when that beat is first presented, and
        keep their values until set again.
        """
        base = len(self._beats)
        self._beats.extend(int(b) for b in beats)
        for k, assignments in (side or {}).items():
            k = int(k)
            if not base <= k < len(self._beats):
                raise ValueError(f"Side assignment for beat {k} is outside the queued beats "
                                 f"{base}..{len(self._beats) - 1}")
            ports = {}
            for name, value in assignments.items():
                if name not in self._side_ports:
                    try:
                        self._side_ports[name] = getattr(self._dut, name)
                    except AttributeError:
                        raise AttributeError(f"The design has no port {name!r} (side "
                                             f"assignment for beat {k})") from None
                ports[name] = int(value)
            self._side[k] = ports

    @property
    def queued(self):
        """Number of beats queued so far."""
        return len(self._beats)

    @property
    def done(self):
        """Whether every queued beat has been accepted."""
        return self.accepted == len(self._beats)

    def apply_side(self, index):
        """Apply the side assignments of beat *index* now (no-op if it has none)."""
        assignments = self._side.get(index)
        if assignments:
            for name, value in assignments.items():
                self._side_ports[name].value = value

    def sample(self):
        """Read the handshake at the edge that just happened."""
        if self._driving:
            try:
                self._fire = bool(self._ready.value)
            except ValueError:
                raise AssertionError(f"{self.prefix}__ready is {self._ready.value} (not 0/1) "
                                     "while valid is high") from None

    def drive(self, cycle=0):
        """Update the state after :meth:`sample`, and drive the inputs for the next edge."""
        if self._fire:
            self.accepted += 1
            self._fire = False
        elif self._driving:
            return  # beat not yet accepted: hold valid and payload
        k = self.accepted
        if k < len(self._beats) and not (self.stall_prob and
                                          self._rng.random() < self.stall_prob):
            if k in self._side:
                self.apply_side(k)
            self._payload.value = self._beats[k]
            if not self._driving:
                self._valid.value = 1
                self._driving = True
                if self.first_valid_cycle is None:
                    self.first_valid_cycle = cycle
        elif self._driving:
            self._valid.value = 0
            self._driving = False

    async def run(self):
        """Drive until every queued beat is accepted (one coroutine; see :func:`run_streams`)."""
        edge = RisingEdge(self.clk)
        cycle = 0
        self.drive(cycle)
        while not self.done:
            await edge
            cycle += 1
            self.sample()
            self.drive(cycle)


class StreamSink:
    """Accepts beats from a stream output of the design, and checks the stream rules.

    ``ready`` is low with probability *stall_prob*, independently per cycle. Protocol check: when
    ``valid`` is high and ``ready`` low at an edge, ``valid`` must still be high, with the same
    payload, at the next edge; violations are recorded in :attr:`violations`.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    prefix : :class:`str`
        Name of the stream port; ``"o"`` reads ``o__valid``, ``o__payload`` and drives
        ``o__ready``.
    clk : cocotb handle or ``None``
        Clock, for :meth:`run` (default ``dut.clk``).
    stall_prob : :class:`float`
        Probability (0 to 0.9) of ``ready`` being low in a cycle.
    rng : :class:`random.Random`, :class:`int` or ``None``
        Source of the stalls, or its seed.

    Attributes
    ----------
    received : :class:`list` of :class:`int`
        Payloads received, in order.
    last_cycle : :class:`int` or ``None``
        Cycle number of the edge at which the last beat was received.
    violations : :class:`list` of :class:`str`
        Protocol violations seen (at most 16 are kept; :attr:`violation_count` counts all).
    """
    def __init__(self, dut, prefix="o", *, clk=None, stall_prob=0.0, rng=None):
        self._valid = _port(dut, prefix, "valid")
        self._ready = _port(dut, prefix, "ready")
        self._payload = _port(dut, prefix, "payload")
        self.prefix = prefix
        self.clk = dut.clk if clk is None else clk
        self.stall_prob = _check_prob("Stall probability", stall_prob)
        self._rng = _rng(rng)
        self._ready_now = False  # value of ready during the current cycle
        self._held = None        # payload of a beat stalled at the previous edge
        self.received = []
        self.last_cycle = None
        self.violations = []
        self.violation_count = 0
        self._ready.value = 0

    def _violation(self, cycle, text):
        self.violation_count += 1
        if len(self.violations) < 16:
            self.violations.append(f"cycle {cycle}: {text}")

    def sample(self, cycle=0):
        """Read the output at the edge that just happened: record a transfer, check the rules."""
        held = self._held
        try:
            valid = bool(self._valid.value)
        except ValueError:
            raise AssertionError(f"{self.prefix}__valid is {self._valid.value} (not 0/1) at "
                                 f"cycle {cycle}") from None
        if valid:
            try:
                payload = self._payload.value.to_unsigned()
            except ValueError:
                payload = None
                self._violation(cycle, f"{self.prefix}.payload is {self._payload.value} "
                                       "(not 0/1) while valid")
            if held is not None and payload != held:
                self._violation(cycle, f"{self.prefix}.payload changed from {held:#x} to "
                                       f"{payload:#x} while stalled")
            if self._ready_now:
                self.received.append(payload)
                self.last_cycle = cycle
                self._held = None
            else:
                self._held = payload
        else:
            if held is not None:
                self._violation(cycle, f"{self.prefix}.valid dropped while stalled (payload "
                                       f"{held:#x} not taken)")
            self._held = None

    def drive(self, cycle=0, *, ready=None):
        """Drive ``ready`` for the next edge: random, or *ready* if given."""
        if ready is None:
            ready = not (self.stall_prob and self._rng.random() < self.stall_prob)
        if ready != self._ready_now:
            self._ready.value = int(ready)
            self._ready_now = ready

    async def run(self, count):
        """Receive until *count* beats have arrived (one coroutine; see :func:`run_streams`)."""
        edge = RisingEdge(self.clk)
        cycle = 0
        self.drive(cycle)
        while len(self.received) < count:
            await edge
            cycle += 1
            self.sample(cycle)
            self.drive(cycle)


class Scoreboard:
    """Compares received beats with expected ones, in order.

    Parameters
    ----------
    expected : iterable of :class:`int`
        Expected payloads.
    name : :class:`str`
        Name of the stream, for messages.
    max_report : :class:`int`
        Number of mismatching beats listed in a report.
    """
    def __init__(self, expected, *, name="o", max_report=8):
        self.expected = [int(e) for e in expected]
        self.name = name
        self.max_report = max_report

    def mismatches(self, actual):
        """Indices of the beats that differ (over the common length)."""
        return [k for k, (e, a) in enumerate(zip(self.expected, actual)) if e != a]

    def report(self, actual):
        """``None`` if *actual* equals the expected beats, else a description of the differences:
        the total count, and the first mismatches with index, expected and actual value in hex."""
        actual = list(actual)
        exp = self.expected
        if actual == exp:
            return None
        bad = self.mismatches(actual)
        hexw = max(1, (max(exp, default=0).bit_length() + 3) // 4) + 2
        lines = []
        if bad:
            lines.append(f"{self.name}: {len(bad)} of {min(len(exp), len(actual))} compared beats "
                         f"differ; first at beat {bad[0]}:")
            for k in bad[:self.max_report]:
                a = actual[k]
                a_hex = "X" if a is None else f"{a:#0{hexw}x}"
                lines.append(f"  beat {k}: expected {exp[k]:#0{hexw}x}, got {a_hex}")
        if len(actual) != len(exp):
            what = "missing" if len(actual) < len(exp) else "unexpected extra"
            lines.append(f"{self.name}: received {len(actual)} beats, expected {len(exp)} "
                         f"({abs(len(exp) - len(actual))} {what})")
            if len(actual) > len(exp):
                extra = ", ".join("X" if a is None else f"{a:#x}"
                                  for a in actual[len(exp):len(exp) + self.max_report])
                lines.append(f"  first extra beats: {extra}")
        return "\n".join(lines)

    def check(self, actual):
        """Raise :exc:`AssertionError` with :meth:`report` if *actual* differs."""
        message = self.report(actual)
        if message is not None:
            raise AssertionError(message)


class IdleWatchdog:
    """Notices a hang: :meth:`idle` is true once the count of transfers has not changed for
    more than ``limit`` cycles."""

    def __init__(self, limit):
        self.limit = limit
        self._count = 0
        self._since = 0

    def idle(self, cycle, count):
        """Whether ``count`` (transfers so far, at ``cycle``) has stood still too long."""
        if count != self._count:
            self._count, self._since = count, cycle
            return False
        return cycle - self._since > self.limit


async def run_streams(clk, driver, sink, *, count, max_cycles, max_idle_cycles=None,
                      drain_cycles=8):
    """Run *driver* and *sink* together in one coroutine, one trigger per clock cycle.

    Runs until the driver has sent everything and the sink has received *count* beats, then
    keeps the sink ready for *drain_cycles* more cycles so that unexpected extra beats are
    caught (they end up in ``sink.received``).

    Parameters
    ----------
    max_cycles : :class:`int`
        Bound on the cycles of the run.
    max_idle_cycles : :class:`int` or ``None``
        Bound on consecutive cycles without a transfer on either stream (``None``: no bound).

    Returns
    -------
    :class:`int`
        Number of cycles run, counted from the first edge.

    Raises
    ------
    :exc:`StreamTimeout`
        If that takes more than *max_cycles* cycles, or nothing moves for more than
        *max_idle_cycles* cycles.
    """
    edge = RisingEdge(clk)
    d_sample, d_drive = driver.sample, driver.drive
    s_sample, s_drive = sink.sample, sink.drive
    received = sink.received
    n_in = driver.queued
    idle_limit = max_cycles if max_idle_cycles is None else max_idle_cycles
    cycle = 0
    watchdog = IdleWatchdog(idle_limit)

    def timeout(what):
        return StreamTimeout(
            f"{what} (deadlock, or bound too small): {driver.accepted} of {n_in} input beats "
            f"accepted, {len(received)} of {count} output beats received")

    d_drive(cycle)
    s_drive(cycle)
    while len(received) < count or driver.accepted < n_in:
        if cycle >= max_cycles:
            raise timeout(f"Not done after max_cycles={max_cycles} cycles")
        await edge
        cycle += 1
        d_sample()
        s_sample(cycle)
        d_drive(cycle)
        s_drive(cycle)
        if watchdog.idle(cycle, driver.accepted + len(received)):
            raise timeout(f"No transfer on either stream for {idle_limit} cycles")
    for _ in range(drain_cycles):
        await edge
        cycle += 1
        s_sample(cycle)
        s_drive(cycle, ready=True)
    return cycle
