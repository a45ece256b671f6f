"""Run the shift MAC cores of :mod:`hdl.mac` in cocotb on frames of dot products.

Python side: :func:`mac_rtl` (frames of INT4/FP4 codes in, the result codes, ``overflow`` and
``end`` markers of every dot product out, each compared with :func:`golden.mac.shift_mac` by a
:class:`MACScoreboard`), :func:`mac_expected` (the golden results of a frame), :func:`mac_core`
(builds :class:`~hdl.mac.ShiftMACUnit`, :class:`~hdl.mac.MultiplierMACUnit` or the arrays) and
:func:`sustained_macs_per_cycle`. Simulator side: the cocotb test :func:`mac_test`, driven by a
JSON file as :mod:`sim.tb_stream` is.

A *frame* is a dict with ``a`` (INT4 codes -8..7, shape ``(T, n)`` for a unit or
``(T, P, n)`` for an array of ``P`` units), ``g`` (FP4 codes 0..15, ``(T, n)``) and optionally
``rounding`` (default ``"nearest_even"``), ``phase`` (0) and ``seed`` (0): ``T`` dot products
of length ``n``, one :func:`~golden.mac.shift_mac` call. The hardware sees each dot product as
``ceil(n / lanes)`` beats, the last one padded with products that are zero (``g`` = ±0 and,
with ``scramble``, random ``a``); ``last`` marks a dot product's final beat and ``end`` (read
with ``last``) the frame's. The ``cfg`` port carries the frame's ``rounding``, ``phase`` and
``seed`` while its first beat is offered; with ``scramble`` (the default) it carries random
bits at every other time, and ``end`` is random on the beats without ``last``, since the core
must ignore both there.

Units: beats on ``i`` with random ``valid`` stalls, results on ``o`` with random ``ready``
stalls. Arrays (``i.ready`` is always high): the host reads the result rows by address
through ``read``/``o`` while the frames go in: row ``r`` is requested once ``rows`` shows it
written, with random stalls on ``read.valid`` and ``o.ready``, and with probability
``reread`` a row already read is requested again (it must read the same). A result row that
the host has not read yet is never overwritten: a beat ending dot product ``d`` waits until
every row up to ``d - depth`` is read (with a ``depth`` above the number of rows this never
stalls the input).

The heavy imports (Amaranth, NumPy, the golden model) happen inside the Python-side
functions, so that the testbench module stays light inside the simulator.
"""

import json
import os
import random
import time
from dataclasses import dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from sim.streams import IdleWatchdog, StreamDriver, StreamSink, StreamTimeout


__all__ = ["MACResult", "MACScoreboard", "mac_core", "mac_expected", "mac_rtl", "mac_stream", "mac_beats",
           "sustained_macs_per_cycle", "mac_test"]


# ---- Python side -------------------------------------------------------------------------------

def mac_core(*, units=None, multiply=False, **core_params):
    """A :class:`~hdl.mac.ShiftMACUnit` (``units=None``), or a :class:`~hdl.mac.ShiftMACArray`
    of ``units`` units; their multiplier baselines with ``multiply=True``."""
    from hdl.mac import ShiftMACUnit, MultiplierMACUnit, ShiftMACArray, MultiplierMACArray
    if units is None:
        return (MultiplierMACUnit if multiply else ShiftMACUnit)(**core_params)
    return (MultiplierMACArray if multiply else ShiftMACArray)(units=units, **core_params)


def _is_array(core):
    from hdl.mac import ShiftMACArray
    return isinstance(core, ShiftMACArray)


def _core_info(core):
    """The core's parameters (as its constructor resolved them)."""
    array = _is_array(core)
    return {
        "array": array, "units": core._units if array else 1, "lanes": core._lanes,
        "depth": core._depth if array else None, "fmt": core._fmt, "acc": core._acc,
        "chunk": core._chunk, "out_fmt": core._out_fmt, "max_length": core._max_length,
        "sr_bits": core._sr_bits, "saturate": core._saturate,
    }


def _frame(frame, index, info):
    """``(a, g, rounding, phase, seed)`` of a frame, checked against the core."""
    import numpy as np
    if not isinstance(frame, dict):
        raise TypeError(f"Frame {index} must be a dict with 'a' and 'g', not {frame!r}")
    unknown = set(frame) - {"a", "g", "rounding", "phase", "seed"}
    if unknown:
        raise ValueError(f"Frame {index} has unknown keys {sorted(unknown)}")
    a, g = np.asarray(frame["a"]), np.asarray(frame["g"])
    want = 3 if info["array"] else 2
    if a.ndim != want or g.ndim != 2:
        raise ValueError(f"Frame {index}: a must have shape "
                         f"{'(T, P, n)' if info['array'] else '(T, n)'} and g (T, n), not "
                         f"{a.shape} and {g.shape}")
    if info["array"] and a.shape[1] != info["units"]:
        raise ValueError(f"Frame {index}: a has {a.shape[1]} rows, the array {info['units']} "
                         f"units")
    if a.shape[0] != g.shape[0] or a.shape[-1] != g.shape[-1]:
        raise ValueError(f"Frame {index}: a {a.shape} and g {g.shape} disagree")
    if g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(f"Frame {index} must hold at least one dot product of at least one "
                         f"element, not {g.shape}")
    if a.dtype.kind not in "iu" or g.dtype.kind not in "iu":
        raise TypeError(f"Frame {index}: codes must be integers")
    if a.min() < -8 or a.max() > 7 or g.min() < 0 or g.max() > 15:
        raise ValueError(f"Frame {index}: a codes must lie in -8..7 and g codes in 0..15")
    return (a.astype(np.int64), g.astype(np.int64), frame.get("rounding", "nearest_even"),
            int(frame.get("phase", 0)), int(frame.get("seed", 0)))


def mac_expected(frame, core):
    """The golden results of ``frame`` on ``core``: a dict with ``values`` (codes, ``(T, P)``,
    ``P = 1`` for a unit), ``overflow`` (``(T,)`` bools, or None with a float accumulator:
    the dot product has more beats than ``max_length`` allows, its value is then not
    compared) and ``end`` (``(T,)``, set for the frame's last dot product)."""
    import numpy as np
    from golden.mac import shift_mac
    info = core if isinstance(core, dict) else _core_info(core)
    a, g, rounding, phase, seed = _frame(frame, 0, info)
    T, n = g.shape
    lanes = info["lanes"]
    overflow = None
    if info["acc"] == "exact":
        too_long = -(-n // lanes) > -(-info["max_length"] // lanes)
        overflow = np.full(T, too_long)
    kwargs = dict(sr_bits=info["sr_bits"], saturate=info["saturate"], units=info["units"])
    if overflow is not None and overflow[0]:
        values = np.zeros((T, info["units"]), np.int64)         # meaningless in hardware
    elif info["array"]:
        values = shift_mac(a, g[:, None, :], info["fmt"], phase, info["acc"], info["chunk"],
                           info["out_fmt"], rounding, seed, **kwargs)
    else:
        values = shift_mac(a, g, info["fmt"], phase, info["acc"], info["chunk"],
                           info["out_fmt"], rounding, seed, **kwargs)[:, None]
    end = np.zeros(T, bool)
    end[-1] = True
    return {"values": np.asarray(values, np.int64).reshape(T, info["units"]),
            "overflow": overflow, "end": end}


class MACScoreboard:
    """Compares the results of frames of dot products with the expected ones.

    Parameters
    ----------
    expected : list of dict
        Per frame, as :func:`mac_expected` returns: ``values`` ``(T, P)``, ``overflow``
        ``(T,)`` or None, ``end`` ``(T,)``. Values of dot products expected to overflow are
        not compared.
    out_fmt : FloatFormat or str
        Format of the codes, to show their values.
    max_report : int
        Mismatches listed in a report.
    """

    def __init__(self, expected, *, out_fmt, max_report=8):
        from golden.formats import resolve_format
        self.expected = expected
        self.out_fmt = resolve_format(out_fmt)
        self.max_report = max_report

    def _show(self, code):
        from golden.formats import decode_float
        digits = (self.out_fmt.bits + 3) // 4
        return f"{int(code):#0{digits + 2}x} ({float(decode_float(int(code), self.out_fmt)):.9g})"

    def mismatches(self, got):
        """``(frame, dot product, unit or None, what, got, expected)`` of every difference
        (``what``: ``"value"``, ``"overflow"``, ``"end"``, or ``"count"`` for missing or extra
        frames and dot products)."""
        import numpy as np
        out = []
        for f, exp in enumerate(self.expected):
            if f >= len(got):
                out.append((f, None, None, "count", "missing", "a frame"))
                continue
            res = got[f]
            values = np.asarray(res["values"]).reshape(len(res["end"]), -1)
            T = len(exp["end"])
            if len(values) != T:
                out.append((f, None, None, "count", f"{len(values)} dot products",
                            f"{T} dot products"))
            for t in range(min(T, len(values))):
                if bool(res["end"][t]) != bool(exp["end"][t]):
                    out.append((f, t, None, "end", int(res["end"][t]), int(exp["end"][t])))
                over = exp["overflow"]
                if over is not None:
                    if bool(res["overflow"][t]) != bool(over[t]):
                        out.append((f, t, None, "overflow", int(res["overflow"][t]),
                                    int(over[t])))
                    if over[t]:
                        continue
                for p in range(exp["values"].shape[1]):
                    if int(values[t, p]) != int(exp["values"][t, p]):
                        out.append((f, t, p, "value", int(values[t, p]),
                                    int(exp["values"][t, p])))
        for f in range(len(self.expected), len(got)):
            out.append((f, None, None, "count", "an extra frame", "none"))
        return out

    def report(self, got):
        """None when ``got`` (per frame: ``values``, ``overflow``, ``end``) matches, else a
        description naming frame, dot product and unit of the first differences."""
        bad = self.mismatches(got)
        if not bad:
            return None
        lines = [f"MAC scoreboard: {len(bad)} mismatches; first:"]
        for f, t, p, what, g, e in bad[:self.max_report]:
            where = f"frame {f}" + ("" if t is None else f", dot product {t}") + \
                ("" if p is None else f", unit {p}")
            if what == "value":
                lines.append(f"  {where}: got {self._show(g)}, expected {self._show(e)}")
            else:
                lines.append(f"  {where}: {what} got {g}, expected {e}")
        return "\n".join(lines)

    def check(self, got):
        message = self.report(got)
        if message is not None:
            raise AssertionError(message)


@dataclass
class MACResult:
    """Outcome of :func:`mac_rtl`.

    Attributes
    ----------
    values : list of ndarray
        Per frame, the result codes, ``(T,)`` for a unit or ``(T, P)`` for an array.
    overflow : list of ndarray or None
        Per frame, the ``overflow`` flags ``(T,)`` (None with a float accumulator).
    end : list of ndarray
        Per frame, the ``end`` markers ``(T,)``.
    expected : list of dict
        The golden results (:func:`mac_expected`).
    beats : int
        Input beats accepted.
    in_span : int
        Cycles from the first accepted input beat to the last, both included.
    out_span : int
        Cycles from the first input beat offered to the last result received.
    cycles : int
        Cycles of the whole run after reset.
    lanes, units : int
        Of the core (``units`` 1 for a unit).
    sim_seconds : float
        Wall-clock time of the simulated cycles.
    """
    values: list
    overflow: list
    end: list
    expected: list
    beats: int
    in_span: int
    out_span: int
    cycles: int
    lanes: int
    units: int
    sim_seconds: float = 0.0
    per_frame: list = field(default_factory=list, repr=False)

    @property
    def macs_per_cycle(self):
        """Sustained multiply-accumulates per cycle at the input: lanes x units x accepted
        beats over :attr:`in_span` (padding lanes count, as the hardware spends them)."""
        return self.beats * self.lanes * self.units / self.in_span


def mac_stream(core, parsed, *, rng=None, scramble=False):
    """The input stream of frames on ``core``: ``(beats, columns, first_cfg, counts)``, the
    packed ``i`` beats, their unpacked ``columns``, the packed ``cfg`` of each frame by the
    index of its first beat, and the dot products of each frame. ``parsed``: frames as
    :func:`_frame` returns them; ``scramble`` fills don't-care inputs from ``rng``."""
    import numpy as np
    from hdl.float import ROUNDING_NAMES
    from hdl.mac import mac_config_layout
    from .api import pack, pack_beats
    info = _core_info(core)
    lanes, P = info["lanes"], info["units"]
    a_cols, g_cols, last_col, end_col = [], [], [], []
    first_cfg, counts = {}, []
    beat = 0
    for a, g, rounding, phase, frame_seed in parsed:
        T, n = g.shape
        nb = -(-n // lanes)
        pad = nb * lanes - n
        if info["array"]:
            a = a.reshape(T * P, n)
        rows = a.shape[0]
        if pad:
            a_fill = rng.integers(-8, 8, (rows, pad)) if scramble else np.zeros((rows, pad),
                                                                               np.int64)
            g_fill = rng.choice([0, 8], (T, pad)) if scramble else np.zeros((T, pad), np.int64)
            a = np.concatenate([a, a_fill], axis=1)
            g = np.concatenate([g, g_fill], axis=1)
        a = a & 15
        if info["array"]:                                 # (T, P, nb, L) -> (T * nb, P, L)
            a_cols.append(a.reshape(T, P, nb, lanes).transpose(0, 2, 1, 3)
                          .reshape(T * nb, P, lanes))
        else:
            a_cols.append(a.reshape(T * nb, lanes))
        g_cols.append(g.reshape(T * nb, lanes))
        last = np.tile(np.arange(nb) == nb - 1, T)
        end = np.zeros(T * nb, bool)
        end[-1] = True
        if scramble:
            end |= (rng.random(T * nb) < 0.5) & ~last
        last_col.append(last)
        end_col.append(end)
        first_cfg[beat] = pack(mac_config_layout, {"rounding": ROUNDING_NAMES[rounding],
                                                   "phase": phase, "seed": frame_seed})
        beat += T * nb
        counts.append(T)
    a_all = np.concatenate(a_cols)
    columns = {"g": np.concatenate(g_cols), "last": np.concatenate(last_col).astype(np.int64),
               "end": np.concatenate(end_col).astype(np.int64)}
    columns["a"] = [a_all[:, p, :] for p in range(P)] if info["array"] else a_all
    in_layout = core.i.payload.shape()
    beats = pack_beats(in_layout, columns)
    return beats, columns, first_cfg, counts


def mac_beats(core, frames):
    """The packed ``i`` beats of ``frames`` (dicts as for :func:`mac_rtl`) on ``core``,
    padding lanes zero."""
    info = _core_info(core)
    parsed = [_frame(frame, k, info) for k, frame in enumerate(frames)]
    return mac_stream(core, parsed)[0]


def mac_rtl(frames, *, units=None, multiply=False, in_stall=0.0, out_stall=0.0,
            read_stall=None, reread=0.0, seed=0, scramble=True, check=True, expected=None,
            simulator=None, waves=None, core=None, **core_params):
    """Run ``frames`` (see the module docstring) through one MAC core in cocotb.

    Parameters
    ----------
    units : int or None
        None for a :class:`~hdl.mac.ShiftMACUnit`, ``P`` for a :class:`~hdl.mac.ShiftMACArray`
        of ``P`` units (``core_params`` then may give its ``depth``).
    multiply : bool
        The multiplier baselines (:class:`~hdl.mac.MultiplierMACUnit`, ...) instead.
    in_stall : float
        Probability of an idle input cycle before each beat.
    out_stall : float
        Probability of ``o.ready`` low in a cycle.
    read_stall : float or None
        Arrays: probability of an idle cycle before each read request (default ``out_stall``).
    reread : float
        Arrays: probability that a read request re-reads a row already read.
    seed : int
        Seed of the stalls and of the scrambled don't-care inputs.
    scramble : bool
        Random ``cfg`` bits while no frame's first beat is offered, random ``end`` on beats
        without ``last``, random ``a`` in the padding lanes.
    check : bool
        Compare every result with the golden model (:class:`MACScoreboard`); a difference
        raises :exc:`AssertionError` naming frame, dot product and unit.
    expected : list of dict or None
        Expected results to compare with instead of the golden model's (to test the check).
    core : Component or None
        A core to use instead of one built from ``units``, ``multiply`` and ``core_params``.

    Returns
    -------
    :class:`MACResult`
    """
    import numpy as np
    from amaranth.hdl import Shape
    from hdl.float import ROUNDING_NAMES
    from hdl.mac import mac_config_layout
    from .api import pack, pack_beats, unpack_beats, run_cocotb

    if core is None:
        core = mac_core(units=units, multiply=multiply, **core_params)
    elif core_params or units is not None or multiply:
        raise ValueError("Give either a core or its parameters, not both")
    info = _core_info(core)
    lanes, P = info["lanes"], info["units"]
    if read_stall is None:
        read_stall = out_stall
    for name, p in (("Input stall", in_stall), ("Output stall", out_stall),
                    ("Read stall", read_stall), ("Reread probability", reread)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 0.9:
            raise ValueError(f"{name} must be a probability between 0 and 0.9, not {p!r}")
    frames = list(frames)
    if not frames:
        raise ValueError("At least one frame is needed")
    rng = np.random.default_rng(seed)

    parsed = [_frame(frame, k, info) for k, frame in enumerate(frames)]
    if expected is None:
        expected = [mac_expected(frame, info) for frame in frames]
    elif len(expected) != len(frames):
        raise ValueError(f"{len(expected)} expected frames for {len(frames)} frames")

    beats, columns, first_cfg, counts = mac_stream(core, parsed, rng=rng, scramble=scramble)
    n_out = sum(counts)

    stall = max(in_stall, out_stall, read_stall)
    work = len(beats) + n_out * (3 if info["array"] else 1) + 64
    max_cycles = int(3000 + 20 * work / (1.0 - stall) ** 2)
    spec = {
        "mode": "array" if info["array"] else "unit",
        "in_beats": [f"{b:x}" for b in beats],
        "last": columns["last"].tolist(),
        "first_cfg": {str(k): f"{v:x}" for k, v in first_cfg.items()},
        "cfg_width": Shape.cast(mac_config_layout).width,
        "scramble": bool(scramble),
        "n_out": n_out,
        "depth": info["depth"],
        "in_stall": float(in_stall), "out_stall": float(out_stall),
        "read_stall": float(read_stall), "reread": float(reread),
        "seed": int(seed),
        "max_cycles": max_cycles, "max_idle_cycles": 2000,
    }
    kind = type(core).__name__
    result, _ = run_cocotb(core, "sim.mac", spec, simulator=simulator, waves=waves,
                           timeout_s=300 + max_cycles / 500,
                           context=f"{kind}, in_stall={in_stall}, out_stall={out_stall}, "
                                   f"seed={seed}")
    received = [int(b, 16) for b in result["out_beats"]]
    cols = unpack_beats(core.o.payload.shape(), received)
    if info["array"]:
        values = cols["values"].reshape(-1, P)
    else:
        values = cols["value"].reshape(-1, 1)
    overflow = cols["overflow"] if info["acc"] == "exact" else None
    ends = cols["end"]
    per_frame = []
    start = 0
    for T in counts:
        stop = start + T
        per_frame.append({"values": values[start:stop],
                          "overflow": None if overflow is None else overflow[start:stop],
                          "end": ends[start:stop]})
        start = stop
    if check:
        MACScoreboard(expected, out_fmt=info["out_fmt"]).check(per_frame)
    shape = (lambda v: v) if info["array"] else (lambda v: v[:, 0])
    return MACResult(
        values=[shape(r["values"]) for r in per_frame],
        overflow=None if overflow is None else [r["overflow"].astype(bool) for r in per_frame],
        end=[r["end"].astype(bool) for r in per_frame], expected=expected,
        beats=result["accepted"], in_span=result["in_span"], out_span=result["out_span"],
        cycles=result["cycles"], lanes=lanes, units=P, sim_seconds=result["seconds"],
        per_frame=per_frame)


def sustained_macs_per_cycle(frames, **kwargs):
    """Sustained multiply-accumulates per cycle (:attr:`MACResult.macs_per_cycle`) of a run
    of ``frames`` through :func:`mac_rtl` (keywords as there; no stalls unless given).
    ``lanes x units`` means one beat every cycle."""
    return mac_rtl(frames, **kwargs).macs_per_cycle


# ---- Simulator side ----------------------------------------------------------------------------

@cocotb.test()
async def mac_test(dut):
    """Drive the beats on ``i`` (``cfg`` with each frame's first beat) and collect one result
    per dot product: from ``o`` (units), or by reading the rows through ``read``/``o``
    (arrays)."""
    with open(os.environ["LOWPREC_TB_DATA"]) as f:
        spec = json.load(f)
    clk = dut.clk
    Clock(clk, 10, unit="ns").start()
    rng = random.Random(spec["seed"])
    in_rng, out_rng, read_rng, misc_rng = (random.Random(rng.random()) for _ in range(4))
    array = spec["mode"] == "array"
    beats = [int(b, 16) for b in spec["in_beats"]]
    lasts = spec["last"]
    first_cfg = {int(k): int(v, 16) for k, v in spec["first_cfg"].items()}
    scramble = spec["scramble"]
    cfg_mask = (1 << spec["cfg_width"]) - 1
    n_in, n_out, depth = len(beats), spec["n_out"], spec["depth"]
    in_stall, reread = spec["in_stall"], spec["reread"]

    i_valid, i_ready, i_payload, cfg = dut.i__valid, dut.i__ready, dut.i__payload, dut.cfg
    i_valid.value = 0
    cfg.value = 0
    sink = StreamSink(dut, "o", clk=clk, stall_prob=spec["out_stall"], rng=out_rng)
    reader = rows_port = None
    if array:
        reader = StreamDriver(dut, "read", clk=clk, stall_prob=spec["read_stall"],
                              rng=read_rng)
        rows_port = dut.rows

    dut.rst.value = 1
    edge = RisingEdge(clk)
    for _ in range(2):
        await edge
    dut.rst.value = 0

    received = sink.received
    errors = []
    accepted = dots = 0                 # input beats accepted, dot products ended
    driving = False
    first_valid = first_accept = last_accept = None
    queued_rows = []                    # row of each read request, in order
    next_row = 0                        # next row to read in order
    rows_written = 0
    row_results = {}
    cycle = 0
    watchdog = IdleWatchdog(spec["max_idle_cycles"])
    start = time.perf_counter()

    def lowest_needed():
        pending = queued_rows[reader.accepted:]
        return min(pending + [next_row])

    def done():
        if accepted < n_in:
            return False
        if not array:
            return len(received) >= n_out
        return next_row >= n_out and reader.done and len(received) >= len(queued_rows)

    sink.drive(0)
    try:
        while not done():
            if cycle >= spec["max_cycles"]:
                raise StreamTimeout(f"Not done after {cycle} cycles: {accepted} of {n_in} "
                                    f"beats accepted, {len(received)} results received")
            await edge
            cycle += 1
            # the edge: what the design saw
            if driving:
                try:
                    fired = bool(i_ready.value)
                except ValueError:
                    raise AssertionError(f"i__ready is {i_ready.value} while valid") from None
                if fired:
                    if lasts[accepted]:
                        dots += 1
                    accepted += 1
                    if first_accept is None:
                        first_accept = cycle
                    last_accept = cycle
            else:
                fired = False
            sink.sample(cycle)
            if array:
                reader.sample()
                rows_written = int(rows_port.value)
                # queue a read: a re-read of a row not yet overwritten, or the next row
                if reader.done and reader.accepted == len(queued_rows):
                    oldest = max(0, dots - depth)
                    if reread and next_row > oldest and misc_rng.random() < reread:
                        queued_rows.append(misc_rng.randrange(oldest, next_row))
                        reader.send([queued_rows[-1] % depth])
                    elif next_row < min(rows_written, n_out):
                        queued_rows.append(next_row)
                        reader.send([next_row % depth])
                        next_row += 1
            # drive the input for the next edge
            if not driving or fired:
                k = accepted
                offer = k < n_in and not (in_stall and in_rng.random() < in_stall)
                if offer and array and lasts[k] and dots >= lowest_needed() + depth:
                    offer = False               # its row would overwrite one not yet read
                if offer:
                    i_payload.value = beats[k]
                    if k in first_cfg:
                        cfg.value = first_cfg[k]
                    elif scramble:
                        cfg.value = misc_rng.getrandbits(32) & cfg_mask
                    if not driving:
                        i_valid.value = 1
                        driving = True
                        if first_valid is None:
                            first_valid = cycle
                else:
                    if driving:
                        i_valid.value = 0
                        driving = False
                    if scramble:
                        cfg.value = misc_rng.getrandbits(32) & cfg_mask
            if array:
                reader.drive(cycle)
            sink.drive(cycle)
            if watchdog.idle(cycle, accepted + len(received) + (reader.accepted if array else 0)):
                raise StreamTimeout(f"No transfer for {spec['max_idle_cycles']} cycles: "
                                    f"{accepted} of {n_in} beats accepted, {len(received)} "
                                    f"results received")
        i_valid.value = 0
        for _ in range(48):                 # nothing more may come out (nor be written)
            await edge
            cycle += 1
            sink.sample(cycle)
            sink.drive(cycle, ready=True)
            if array:
                rows_written = int(rows_port.value)
    except StreamTimeout as e:
        errors.append(str(e))
    if array:
        out = []
        for row, payload in zip(queued_rows, received):
            if row in row_results:
                if payload != row_results[row]:
                    errors.append(f"row {row} read again as {payload:#x}, first read as "
                                  f"{row_results[row]:#x}")
            else:
                row_results[row] = payload
        if len(received) > len(queued_rows):
            errors.append(f"o: {len(received) - len(queued_rows)} beats more than read "
                          f"requests")
        out = [row_results.get(r) for r in range(n_out)]
        if rows_written != n_out:
            errors.append(f"rows is {rows_written} at the end, expected {n_out}")
    else:
        out = list(received)
        if len(out) > n_out:
            errors.append(f"o: {len(out) - n_out} results more than the {n_out} dot products")
            out = out[:n_out]
    if sink.violation_count:
        errors.append(f"o: {sink.violation_count} stream protocol violations; first:\n  "
                      + "\n  ".join(sink.violations[:8]))
    if any(b is None for b in out):
        errors.append("o: a result has undefined (X/Z) bits or is missing")
    error = "\n".join(errors) or None
    path = os.environ.get("LOWPREC_TB_RESULT")
    if path:
        with open(f"{path}.tmp", "w") as f:
            json.dump({
                "out_beats": ["0" if b is None else f"{b:x}" for b in out],
                "accepted": accepted,
                "in_span": 0 if first_accept is None else last_accept - first_accept + 1,
                "out_span": None if sink.last_cycle is None or first_valid is None
                else sink.last_cycle - first_valid,
                "cycles": cycle, "seconds": time.perf_counter() - start, "error": error}, f)
        os.replace(f"{path}.tmp", path)
    if error:
        raise AssertionError(error)
