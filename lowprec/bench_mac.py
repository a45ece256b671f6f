"""Benchmarks of the shift MAC (``hdl/mac.py``): the shift array against the multiplier
baseline, and the array's sustained throughput in simulation.

Synthesis rows: :class:`~hdl.mac.ShiftMACArray` and :class:`~hdl.mac.MultiplierMACArray` for
``lanes`` L in (8, 16, 32) and ``units`` P in (1, 4, 8), both built from fabric only
(``dsp=False``: no DSP inference, so the comparison is LUTs against LUTs), with
``elements_per_cycle = L * P`` so the ``elem/s`` column is MAC/s. Default core parameters
(``fp4_r4``, exact accumulator up to 4096 products, fp16 results) and a result memory of
:data:`DEPTH` rows.

:func:`shift_vs_multiplier` (a :data:`lowprec.bench.SYNTH_SUMMARIES` entry) pairs the rows of
one run per (L, P, device): LUTs per MAC of both, their ratio and both Fmax, and whether the
target holds (the shift array at most half the multiplier's LUTs per MAC, at equal or higher
Fmax). :func:`comparison` does the same for rows read back from ``lowprec bench --json``.

:func:`mac_throughput` (an :data:`lowprec.bench.EXTRA_SECTIONS` entry) runs the shift array in
Amaranth's Python simulator with always-valid input, counts the result rows written per
cycle and checks the rows read back against :func:`golden.mac.shift_mac`.
"""

import numpy as np

from . import bench


__all__ = ["LANES", "UNITS", "DEPTH", "register_all", "bench_name", "comparison",
           "shift_vs_multiplier", "measure_throughput", "mac_throughput"]

LANES = (8, 16, 32)
UNITS = (1, 4, 8)
#: Rows of the arrays' result memory in the synthesis rows.
DEPTH = 256
#: Arrays of 4 and 8 units are built for the ECP5 only: every one of them, shift or
#: multiplier, overflowed the iCE40UP5K's 5280 logic cells (128-935 %) when built once.
ECP5_ONLY = ("ecp5-85f",)

_KINDS = ("shift", "mult")


def bench_name(kind, lanes, units):
    """Name of the synthesis row of ``kind`` (``"shift"`` or ``"mult"``) for L, P."""
    return f"mac-{kind}-array-l{lanes}-p{units}"


def _factory(kind, params):
    from hdl.mac import ShiftMACArray, MultiplierMACArray
    cls = ShiftMACArray if kind == "shift" else MultiplierMACArray
    return cls(**params)


def register_all():
    for lanes in LANES:
        for units in UNITS:
            params = {"units": units, "lanes": lanes, "depth": DEPTH}
            for kind in _KINDS:
                bench.register(bench_name(kind, lanes, units),
                               lambda kind=kind, params=params: _factory(kind, params),
                               dict(params), elements_per_cycle=lanes * units,
                               quick=(lanes, units) == (8, 1), dsp=False,
                               devices=None if units == 1 else ECP5_ONLY)
    bench.SYNTH_SUMMARIES.append(shift_vs_multiplier)
    bench.EXTRA_SECTIONS.append(mac_throughput)


# --- shift against multiplier -----------------------------------------------------------------


def _parse_name(name):
    """(kind, L, P) of a MAC array row name, or None."""
    for kind in _KINDS:
        prefix = f"mac-{kind}-array-l"
        if name.startswith(prefix):
            try:
                lanes, units = name[len(prefix):].split("-p")
                return kind, int(lanes), int(units)
            except ValueError:
                return None
    return None


def _status(row):
    if row is None:
        return "not built"
    if row.get("error"):
        return "no fit" if row.get("no_fit") else "failed"
    return None


def comparison(rows):
    """Rows pairing the shift and multiplier arrays per (L, P, device), from synthesis rows
    (dicts as :func:`lowprec.bench.run_benches` returns or ``--json`` writes)."""
    pairs = {}
    for row in rows:
        if row.get("section", bench.SYNTH_SECTION) != bench.SYNTH_SECTION:
            continue
        parsed = _parse_name(row.get("name", ""))
        if parsed is None:
            continue
        kind, lanes, units = parsed
        pairs.setdefault((lanes, units, row["device"]), {})[kind] = row
    out = []
    for (lanes, units, device), pair in pairs.items():
        macs = lanes * units
        shift, mult = pair.get("shift"), pair.get("mult")
        result = {"L": lanes, "P": units, "device": device}
        for kind, row in (("shift", shift), ("mult", mult)):
            status = _status(row)
            result[f"{kind} LUT"] = status or row["luts"]
            result[f"{kind} LUT/MAC"] = None if status else round(row["luts"] / macs, 2)
            result[f"{kind} Fmax"] = None if status else row["fmax_mhz"]
        if _status(shift) or _status(mult):
            result.update({"ratio": None, "LUT target": None, "Fmax target": None,
                           "target met": "n/a"})
        else:
            ratio = shift["luts"] / mult["luts"] if mult["luts"] else float("inf")
            lut_ok = ratio <= 0.5
            fmax_ok = shift["fmax_mhz"] >= mult["fmax_mhz"]
            result.update({
                "ratio": round(ratio, 3),
                "LUT target": "yes" if lut_ok else "NO",
                "Fmax target": "yes" if fmax_ok else "NO",
                "target met": "yes" if lut_ok and fmax_ok else "NO",
                "shift MAC/s": bench._si(shift["fmax_mhz"] * 1e6 * macs),
                "mult MAC/s": bench._si(mult["fmax_mhz"] * 1e6 * macs),
            })
        out.append(result)
    out.sort(key=lambda r: (r["device"], r["L"], r["P"]))
    return out


def shift_vs_multiplier(synth_rows):
    """:data:`lowprec.bench.SYNTH_SUMMARIES` entry: :func:`comparison`, or None without any
    MAC array row in the run."""
    rows = comparison(synth_rows)
    if not rows:
        return None
    return ("Shift vs multiplier MAC arrays (fabric only; target: shift LUT/MAC <= 0.5 x "
            "multiplier's at equal or higher Fmax)", rows)


# --- throughput in simulation ---------------------------------------------------------------


def measure_throughput(*, lanes=8, units=4, beats=256, beats_per_dot=4, rounding="stochastic",
                       seed=7, rng_seed=0):
    """Run :class:`~hdl.mac.ShiftMACArray` (``units``, ``lanes``) in the Python simulator on
    ``beats`` always-valid beats (dot products of ``beats_per_dot * lanes`` products), read
    the result rows back, and return a dict: ``cycles`` (from the first beat to the last row
    written, the pipeline latency included), ``latency``, ``row_span`` (cycles from the first
    row written to the last, plus one dot product's beats: the steady-state time of the
    rows), ``mac_per_cycle`` (MACs over ``row_span``), ``peak`` (L * P) and ``correct``
    (the rows read back equal :func:`golden.mac.shift_mac` with ``units=units``)."""
    from amaranth.sim import Simulator
    from golden.mac import shift_mac
    from hdl.float import ROUNDING_NAMES
    from hdl.mac import ShiftMACArray

    if beats % beats_per_dot:
        raise ValueError(f"Beats {beats} must be a multiple of beats per dot product "
                         f"{beats_per_dot}")
    dots = beats // beats_per_dot
    depth = 1 << max(dots - 1, 1).bit_length()
    dut = ShiftMACArray(units=units, lanes=lanes, depth=depth)
    n = beats_per_dot * lanes
    rng = np.random.default_rng(rng_seed)
    a = rng.integers(-8, 8, (dots, units, n))
    g = rng.integers(0, 16, (dots, n))
    expected = shift_mac(a, g[:, None, :], rounding=rounding, seed=seed, units=units)

    state = {"first_beat": None, "row_cycles": [], "cycle": 0}
    got = []

    async def clock_counter(ctx):
        async for _, _, rows in ctx.tick().sample(dut.rows):
            state["cycle"] += 1
            state.setdefault("prev_rows", 0)
            if rows != state["prev_rows"]:
                state["row_cycles"].append(state["cycle"])
                state["prev_rows"] = rows

    async def testbench(ctx):
        ctx.set(dut.cfg.rounding, ROUNDING_NAMES[rounding])
        ctx.set(dut.cfg.seed, seed)
        ctx.set(dut.cfg.phase, 0)
        ctx.set(dut.o.ready, 1)
        for beat in range(beats):
            t, b = divmod(beat, beats_per_dot)
            for p in range(units):
                for lane in range(lanes):
                    ctx.set(dut.i.payload.a[p][lane], int(a[t, p, b * lanes + lane]) & 15)
            for lane in range(lanes):
                ctx.set(dut.i.payload.g[lane], int(g[t, b * lanes + lane]))
            ctx.set(dut.i.payload.last, b == beats_per_dot - 1)
            ctx.set(dut.i.payload.end, beat == beats - 1)
            ctx.set(dut.i.valid, 1)
            assert ctx.get(dut.i.ready)
            if state["first_beat"] is None:
                state["first_beat"] = state["cycle"]
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(dut.latency + 4):
            await ctx.tick()
        for row in range(dots):
            ctx.set(dut.read.payload, row)
            ctx.set(dut.read.valid, 1)
            await ctx.tick()
            assert ctx.get(dut.o.valid)
            got.append([ctx.get(dut.o.payload.values[p]) for p in range(units)])
        ctx.set(dut.read.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(clock_counter)
    sim.add_testbench(testbench)
    sim.run()

    row_cycles = state["row_cycles"]
    if len(row_cycles) != dots:
        raise AssertionError(f"{len(row_cycles)} rows written, expected {dots}")
    # the first beat is taken at the end of cycle first_beat + 1 (cycles counted at edges)
    cycles = row_cycles[-1] - state["first_beat"]
    row_span = row_cycles[-1] - row_cycles[0] + beats_per_dot
    macs = beats * lanes * units
    return {
        "L": lanes, "P": units, "beats": beats, "dot products": dots * units,
        "cycles": cycles, "latency": dut.latency, "row_span": row_span,
        "mac_per_cycle": macs / row_span,
        "mac_per_cycle_incl_latency": round(macs / cycles, 3),
        "peak": lanes * units,
        "correct": bool(np.array_equal(np.array(got), expected)),
    }


def mac_throughput(*, quick):
    """:data:`lowprec.bench.EXTRA_SECTIONS` entry: sustained MAC/cycle of ShiftMACArray
    (L = 8, P = 4) in the Python simulator, results checked against the golden model."""
    beats = 64 if quick else 320
    row = measure_throughput(lanes=8, units=4, beats=beats)
    return "MAC array throughput in simulation (ShiftMACArray, amaranth.sim, always valid)", [row]
