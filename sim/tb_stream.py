"""Generic cocotb testbench for a core with one input stream and one output stream.

Driven by data: ``$LOWPREC_TB_DATA`` names a JSON file with

``in_beats``
    Input payloads, hex strings.
``expected``
    Expected output payloads, hex strings; ``null`` for capture mode, which collects
    ``expected_count`` beats and checks nothing but the stream rules.
``expected_count``
    Number of output beats to collect in capture mode.
``side``
    Optional ``{"<beat index>": {"<port>": "<hex>"}}``: ports set when that input beat is first
    presented, held until set again.
``init``
    Optional ``{"<port>": "<hex>"}``: values of extra input ports from reset on.
``in_stall``, ``out_stall``
    Probabilities (0 to 0.9) of an idle input cycle and of ``ready`` low at the output.
``seed``
    Seed of the stall generator.
``max_cycles``
    Bound on the cycles after reset; exceeding it fails the test (a deadlock is a failure).
``max_idle_cycles``
    Optional bound on consecutive cycles without a transfer on either stream.
``reset_cycles``
    Cycles of ``rst`` high at the start.
``in_prefix``, ``out_prefix``, ``drain_cycles``
    Optional: stream port names (``"i"``, ``"o"``) and cycles to watch for extra output beats
    after the last expected one (8).

Results go to the JSON file named by ``$LOWPREC_TB_RESULT``: ``out_beats`` (hex strings),
``cycles`` (from the cycle input ``valid`` first rose to the edge of the last output beat),
``total_cycles``, ``accepted`` (input beats taken), ``seconds`` (wall-clock time of the
stream phase) and ``error`` (``null`` when the test passed).
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from sim.streams import Scoreboard, StreamDriver, StreamSink, StreamTimeout, run_streams


def _load():
    try:
        path = os.environ["LOWPREC_TB_DATA"]
    except KeyError:
        raise RuntimeError("LOWPREC_TB_DATA must name the JSON file describing the test") \
            from None
    with open(path) as f:
        return json.load(f)


def _write_result(result):
    path = os.environ.get("LOWPREC_TB_RESULT")
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, path)


@cocotb.test()
async def stream_test(dut):
    """Send ``in_beats``, receive and check the output stream against ``expected``."""
    spec = _load()
    in_beats = [int(b, 16) for b in spec["in_beats"]]
    expected = spec.get("expected")
    if expected is not None:
        expected = [int(b, 16) for b in expected]
        count = len(expected)
    else:
        count = int(spec["expected_count"])
    rng = random.Random(spec.get("seed", 0))
    clk = dut.clk

    Clock(clk, 10, unit="ns").start()
    for name, value in (spec.get("init") or {}).items():
        getattr(dut, name).value = int(value, 16)
    driver = StreamDriver(dut, spec.get("in_prefix", "i"), clk=clk,
                          stall_prob=spec.get("in_stall", 0.0), rng=rng)
    sink = StreamSink(dut, spec.get("out_prefix", "o"), clk=clk,
                      stall_prob=spec.get("out_stall", 0.0), rng=rng)
    side = {int(k): {p: int(v, 16) for p, v in a.items()}
            for k, a in (spec.get("side") or {}).items()}
    driver.send(in_beats, side)

    dut.rst.value = 1
    edge = RisingEdge(clk)
    for _ in range(max(1, int(spec.get("reset_cycles", 2)))):
        await edge
    dut.rst.value = 0

    errors = []
    total = None
    start = time.perf_counter()
    try:
        total = await run_streams(clk, driver, sink, count=count,
                                  max_cycles=int(spec["max_cycles"]),
                                  max_idle_cycles=spec.get("max_idle_cycles"),
                                  drain_cycles=int(spec.get("drain_cycles", 8)))
    except StreamTimeout as e:
        errors.append(str(e))
    seconds = time.perf_counter() - start
    received = sink.received
    if expected is not None:
        report = Scoreboard(expected, name=sink.prefix).report(received)
        if report is not None:
            errors.append(report)
    elif len(received) > count:
        errors.append(f"{sink.prefix}: received {len(received)} beats, expected {count}")
    if sink.violation_count:
        errors.append(f"{sink.prefix}: {sink.violation_count} stream protocol violations; "
                      f"first:\n  " + "\n  ".join(sink.violations[:8]))
    first = driver.first_valid_cycle
    cycles = (sink.last_cycle - first) if (sink.last_cycle is not None and first is not None) \
        else None
    error = "\n".join(errors) or None
    _write_result({
        "out_beats": ["X" if b is None else f"{b:x}" for b in received],
        "cycles": cycles,
        "total_cycles": total,
        "accepted": driver.accepted,
        "seconds": seconds,
        "error": error,
    })
    if error:
        raise AssertionError(error)
