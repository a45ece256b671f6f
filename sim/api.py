"""Python API of the simulation harness: run a stream core on beats, pack and unpack payloads.

Payload packing always goes through the Amaranth layouts (``lib.data``), never through
hand-written bit offsets: :func:`pack` and :func:`unpack` use :meth:`Layout.const` and
:meth:`Layout.from_bits`; :func:`pack_beats` and :func:`unpack_beats` take the offsets of the
fields from iterating the layout, and work on NumPy columns for many beats at once.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Const, Shape, ShapeCastable, Signal, Value
from amaranth.lib import data, wiring

from .runner import SimulationFailed, default_simulator, run_testbench, waves_requested
from .verilog import build_dir_for, to_verilog


__all__ = [
    "StreamResult", "run_stream", "run_cocotb", "default_max_cycles", "payload_shape",
    "pack", "unpack", "pack_beats", "unpack_beats",
]


# --- packing ----------------------------------------------------------------------------------

def _is_layout(shape):
    return isinstance(shape, data.Layout)


def _check_value(shape, value, path):
    # Amaranth truncates out-of-range constants silently; a testbench must not.
    if _is_layout(shape):
        if isinstance(shape, data.ArrayLayout):
            if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
                raise TypeError(f"Value of {path} must be a sequence of {shape.length} "
                                f"elements, not {value!r}")
            if len(value) != shape.length:
                raise ValueError(f"Value of {path} must have {shape.length} elements, "
                                 f"not {len(value)}")
        elif not isinstance(value, Mapping):
            raise TypeError(f"Value of {path} must be a mapping of field names, not {value!r}")
        items = enumerate(value) if isinstance(value, Sequence) else value.items()
        for key, item in items:
            try:
                field = shape[key]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"{path} has no field {key!r}") from None
            _check_value(field.shape, item, f"{path}[{key!r}]")
    elif isinstance(shape, ShapeCastable):
        pass  # e.g. an enum: its own const() validates
    else:
        shape = Shape.cast(shape)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"Value of {path} must be an integer, not {value!r}")
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - 1 if shape.signed else shape.width)) - 1
        if not lo <= value <= hi:
            raise ValueError(f"Value of {path} must be between {lo} and {hi} for {shape!r}, "
                             f"not {value}")


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def pack(layout, value):
    """Bit pattern (a non-negative :class:`int`) of *value* seen through *layout*.

    *layout* is a :class:`~amaranth.lib.data.Layout` (then *value* is a mapping of field names or
    a sequence of array elements, nested as the layout is; missing fields are zero) or a plain
    shape (then *value* is an :class:`int`). NumPy arrays and integers are accepted too.
    Out-of-range values raise :exc:`ValueError`.
    """
    value = _plain(value)
    _check_value(layout, value, "payload")
    if _is_layout(layout):
        return layout.const(value).as_bits()
    if isinstance(layout, ShapeCastable):
        return Const.cast(layout.const(value)).value & ((1 << Shape.cast(layout).width) - 1)
    shape = Shape.cast(layout)
    return int(value) & ((1 << shape.width) - 1)


def _to_python(value):
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [_to_python(value[k]) for k in range(layout.length)]
        return {key: _to_python(value[key]) for key, _ in layout}
    return value


def unpack(layout, bits):
    """Inverse of :func:`pack`: nested :class:`dict`/:class:`list`/:class:`int` from a bit
    pattern. Signed fields come back negative when their sign bit is set."""
    bits = int(bits)
    width = Shape.cast(layout).width
    if not 0 <= bits < (1 << width):
        raise ValueError(f"Bit pattern must be between 0 and {(1 << width) - 1} for {layout!r}, "
                         f"not {bits}")
    if isinstance(layout, ShapeCastable):
        return _to_python(layout.from_bits(bits))
    return Const(bits, Shape.cast(layout)).value


def _leaves(shape, column, offset, out, path):
    """Flatten *column* (nested like *shape*) into ``(offset, width, signed, array, path)``."""
    if _is_layout(shape):
        if isinstance(shape, data.ArrayLayout) and not _is_layout(shape.elem_shape):
            arr = np.asarray(column)
            if arr.ndim != 2 or arr.shape[1] != shape.length:
                raise ValueError(f"Column of {path} must be a 2-D array of shape "
                                 f"(beats, {shape.length}), not {arr.shape}")
            for index, field in shape:
                _leaves(field.shape, arr[:, index], offset + field.offset, out,
                        f"{path}[{index}]")
            return
        for key, field in shape:
            try:
                sub = column[key]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"Columns of {path} lack field {key!r}") from None
            _leaves(field.shape, sub, offset + field.offset, out, f"{path}[{key!r}]")
        return
    cast = Shape.cast(shape)
    if cast.width > 64:
        raise ValueError(f"Field {path} is {cast.width} bits wide; pack_beats handles fields of "
                         f"at most 64 bits")
    out.append((offset, cast.width, cast.signed, column, path))


def _words(width):
    return max(1, (width + 63) // 64)


def pack_beats(layout, columns):
    """Pack many beats at once; returns a :class:`list` of :class:`int`.

    *columns* is nested like *layout*, with a NumPy array (one element per beat) at each leaf
    field: a 1-D array for a plain shape, a 2-D array ``(beats, length)`` for an
    :class:`~amaranth.lib.data.ArrayLayout` of plain elements, a mapping for a
    :class:`~amaranth.lib.data.StructLayout`, and a sequence of per-element columns for an array
    of layouts. Fields may be at most 64 bits wide; values are range-checked.
    """
    leaves = []
    _leaves(layout, columns, 0, leaves, "payload")
    width = Shape.cast(layout).width
    nwords = _words(width)
    beats = None
    words = None
    for offset, fwidth, signed, column, path in leaves:
        arr = np.asarray(column)
        if arr.ndim != 1:
            raise ValueError(f"Column of {path} must be 1-D, not of shape {arr.shape}")
        if beats is None:
            beats = len(arr)
            words = np.zeros((nwords, beats), dtype=np.uint64)
        elif len(arr) != beats:
            raise ValueError(f"Column of {path} has {len(arr)} beats, others have {beats}")
        if beats == 0:
            continue
        if arr.dtype.kind not in "iub":
            raise TypeError(f"Column of {path} must hold integers, not {arr.dtype}")
        lo = -(1 << (fwidth - 1)) if signed else 0
        hi = (1 << (fwidth - 1 if signed else fwidth)) - 1
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            raise ValueError(f"Values of {path} must be between {lo} and {hi}, not {bad}")
        mask = np.uint64((1 << fwidth) - 1)
        bits = (arr.astype(np.int64).view(np.uint64) if arr.dtype.kind == "i"
                else arr.astype(np.uint64)) & mask
        word, shift = divmod(offset, 64)
        words[word] |= bits << np.uint64(shift)
        if shift + fwidth > 64:
            words[word + 1] |= bits >> np.uint64(64 - shift)
    if not beats:
        return []
    if nwords == 1:
        return words[0].tolist()
    buf = np.ascontiguousarray(words.T).astype("<u8").tobytes()
    step = 8 * nwords
    return [int.from_bytes(buf[k:k + step], "little") for k in range(0, len(buf), step)]


def unpack_beats(layout, beats):
    """Inverse of :func:`pack_beats`: columns (nested like *layout*) of NumPy arrays.

    Leaves are ``int64`` arrays (``uint64`` for 64-bit unsigned fields); an
    :class:`~amaranth.lib.data.ArrayLayout` of plain elements becomes a 2-D array.
    """
    width = Shape.cast(layout).width
    nwords = _words(width)
    n = len(beats)
    if nwords == 1:
        words = np.array([int(b) for b in beats] if n and not isinstance(beats, np.ndarray)
                         else beats, dtype=np.uint64).reshape(1, n)
    else:
        nbytes = 8 * nwords
        buf = b"".join(int(b).to_bytes(nbytes, "little") for b in beats)
        words = np.frombuffer(buf, dtype="<u8").reshape(n, nwords).T.astype(np.uint64)

    def leaf(offset, fwidth, signed):
        word, shift = divmod(offset, 64)
        bits = words[word] >> np.uint64(shift)
        if shift + fwidth > 64:
            bits = bits | (words[word + 1] << np.uint64(64 - shift))
        if fwidth < 64:
            bits = bits & np.uint64((1 << fwidth) - 1)
        if signed:
            out = bits.view(np.int64)
            if fwidth < 64:
                sign = np.int64(1 << (fwidth - 1))
                out = (out ^ sign) - sign
            return out
        return bits if fwidth == 64 else bits.astype(np.int64)

    def walk(shape, offset):
        if _is_layout(shape):
            if isinstance(shape, data.ArrayLayout):
                if not _is_layout(shape.elem_shape):
                    cast = Shape.cast(shape.elem_shape)
                    return np.stack([leaf(offset + f.offset, cast.width, cast.signed)
                                     for _, f in shape], axis=1) if shape.length else \
                        np.zeros((n, 0), dtype=np.int64)
                return [walk(f.shape, offset + f.offset) for _, f in shape]
            return {key: walk(f.shape, offset + f.offset) for key, f in shape}
        cast = Shape.cast(shape)
        if cast.width > 64:
            raise ValueError(f"Fields of at most 64 bits are supported, not {cast.width}")
        return leaf(offset, cast.width, cast.signed)

    return walk(layout, 0)


# --- running ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamResult:
    """Outcome of :func:`run_stream`.

    Attributes
    ----------
    out_beats : :class:`list` of :class:`int`
        Output payloads, in order.
    cycles : :class:`int`
        Clock cycles from the first input ``valid`` to the edge of the last output beat.
    total_cycles : :class:`int`
        Clock cycles of the whole run after reset (including the drain check).
    sim_seconds : :class:`float`
        Wall-clock time of those cycles in the simulator (without start-up), for measuring
        simulation speed: ``total_cycles / sim_seconds`` cycles per second.
    run_dir : :class:`pathlib.Path` or ``None``
        Directory of the run (log, waveforms) when it is kept: with waveforms, or when
        ``$LOWPREC_KEEP_RUNS`` is set.
    """
    out_beats: list
    cycles: int
    total_cycles: int = 0
    sim_seconds: float = 0.0
    run_dir: Path = None

    @property
    def cycles_per_beat(self):
        """:attr:`cycles` per output beat (1.0 is one beat a clock cycle, plus latency)."""
        return self.cycles / len(self.out_beats) if self.out_beats else float("nan")


def payload_shape(component, stream="i"):
    """Payload shape (layout or plain shape) of the stream member *stream* of *component*."""
    try:
        payload = getattr(component, stream).payload
    except AttributeError:
        raise ValueError(f"Component has no stream member {stream!r}") from None
    return payload.shape()


def _extra_inputs(component, streams):
    """``{port_name: (shape, init)}`` of the input ports other than *streams*."""
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if member.flow != wiring.In or path[0] in streams:
            continue
        name = "__".join(map(str, path))
        signal = Value.cast(value)
        init = signal.init if isinstance(signal, Signal) else 0
        ports[name] = (value.shape(), init & ((1 << len(signal)) - 1))
    return ports


def default_max_cycles(n_in, n_out, in_stall=0.0, out_stall=0.0):
    """A generous cycle bound: 1000 plus 20 times the expected cycles of a one-beat-a-cycle core
    given the stalls."""
    return int(1000 + 20 * (n_in / (1.0 - in_stall) + n_out / (1.0 - out_stall)))


def _check_beats(name, beats):
    if isinstance(beats, np.ndarray):
        if beats.ndim != 1 or beats.dtype.kind not in "iuO":
            raise TypeError(f"{name} must be a 1-D array of integers, not {beats.dtype} "
                            f"of shape {beats.shape}")
        beats = beats.tolist()
    beats = list(beats)
    for k, b in enumerate(beats):
        if not isinstance(b, (int, np.integer)) or isinstance(b, bool) or b < 0:
            raise TypeError(f"{name} must be non-negative integers (packed payloads; see pack()), "
                            f"but beat {k} is {b!r}")
        if type(b) is not int:
            beats[k] = int(b)
    return beats


def run_stream(component, in_beats, *, expected=None, expected_count=None, side=None,
               in_stall=0.0, out_stall=0.0, seed=0, simulator=None, waves=None,
               max_cycles=None, max_idle_cycles=10_000):
    """Simulate *component* on a stream of input beats and return its output beats.

    Parameters
    ----------
    component : :class:`amaranth.lib.wiring.Component`
        A core with an input stream ``i`` and an output stream ``o``; other input ports are
        held at their initial value unless set through *side*.
    in_beats : sequence of :class:`int`
        Packed input payloads (see :func:`pack`, :func:`pack_beats`).
    expected : sequence of :class:`int` or ``None``
        Packed expected output payloads, compared in order. ``None`` to only capture
        *expected_count* beats (still checking the stream rules).
    expected_count : :class:`int` or ``None``
        Number of output beats to capture when *expected* is ``None``.
    side : :class:`dict` or ``None``
        ``{beat_index: {port_name: value}}``: extra input ports set when that input beat is first
        presented, and held until set again. A value is an :class:`int` (packed) or a
        :class:`dict`/:class:`list` packed with the port's layout.
    in_stall, out_stall : :class:`float`
        Probabilities (0 to 0.9) of an idle input cycle before each beat, and of the output
        ``ready`` being low in a cycle.
    seed : :class:`int`
        Seed of the stall pattern.
    simulator : :class:`str` or ``None``
        ``"icarus"`` or ``"verilator"``; ``None`` for ``$LOWPREC_SIM``, else ``"icarus"``.
    waves : :class:`bool` or ``None``
        Record waveforms (kept in the run directory); ``None`` for ``$WAVES``.
    max_cycles : :class:`int` or ``None``
        Bound on the cycles of the run; ``None`` for :func:`default_max_cycles`.
    max_idle_cycles : :class:`int`
        Bound on consecutive cycles without any transfer on either stream, so that a deadlock
        fails quickly. Raise it for cores that compute for long between transfers.

    Returns
    -------
    :class:`StreamResult`

    Raises
    ------
    :exc:`AssertionError`
        If outputs differ from *expected*, the stream rules are broken, *max_cycles* is exceeded,
        or the simulation fails otherwise. The message lists the first mismatches.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be an amaranth.lib.wiring.Component, not {component!r}")
    for name in ("i", "o"):
        if name not in component.signature.members:
            raise ValueError(f"Component must have stream members 'i' and 'o'; {name!r} is missing")
    in_beats = _check_beats("Input beats", in_beats)
    if expected is not None:
        expected = _check_beats("Expected beats", expected)
        if expected_count is not None and expected_count != len(expected):
            raise ValueError(f"Expected count {expected_count} differs from the "
                             f"{len(expected)} expected beats")
        n_out = len(expected)
    elif expected_count is None:
        raise ValueError("Either expected beats or an expected count must be given")
    elif not isinstance(expected_count, int) or expected_count < 0:
        raise ValueError(f"Expected count must be a non-negative integer, not {expected_count!r}")
    else:
        n_out = expected_count
    for pname, p in (("Input stall probability", in_stall),
                     ("Output stall probability", out_stall)):
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 0.9:
            raise ValueError(f"{pname} must be between 0 and 0.9, not {p!r}")
    if not isinstance(seed, int):
        raise TypeError(f"Seed must be an integer, not {seed!r}")
    if max_cycles is None:
        max_cycles = default_max_cycles(len(in_beats), n_out, in_stall, out_stall)
    elif not isinstance(max_cycles, int) or max_cycles <= 0:
        raise ValueError(f"Maximum cycle count must be a positive integer, not {max_cycles!r}")
    if not isinstance(max_idle_cycles, int) or max_idle_cycles <= 0:
        raise ValueError(f"Maximum idle cycle count must be a positive integer, not "
                         f"{max_idle_cycles!r}")

    in_width = Shape.cast(payload_shape(component, "i")).width
    for k, b in enumerate(in_beats):
        if b >> in_width:
            raise ValueError(f"Input beat {k} ({b:#x}) does not fit the {in_width}-bit payload")
    extra = _extra_inputs(component, ("i", "o"))
    side_json = {}
    for k, assignments in (side or {}).items():
        if not isinstance(k, (int, np.integer)) or not 0 <= k < len(in_beats):
            raise ValueError(f"Side assignment index must be an input beat index between 0 and "
                             f"{len(in_beats) - 1}, not {k!r}")
        entry = {}
        for port, value in assignments.items():
            if port not in extra:
                raise ValueError(f"Side assignment for beat {k} names {port!r}, which is not an "
                                 f"extra input port (ports: {', '.join(extra) or 'none'})")
            entry[port] = f"{pack(extra[port][0], value):x}"
        side_json[str(int(k))] = entry

    spec = {
        "in_beats": [f"{b:x}" for b in in_beats],
        "expected": None if expected is None else [f"{b:x}" for b in expected],
        "expected_count": n_out,
        "side": side_json,
        "init": {name: f"{init:x}" for name, (_, init) in extra.items()},
        "in_stall": float(in_stall),
        "out_stall": float(out_stall),
        "seed": seed,
        "max_cycles": max_cycles,
        "max_idle_cycles": max_idle_cycles,
        "reset_cycles": 2,
    }
    result, run_dir = run_cocotb(component, "sim.tb_stream", spec, simulator=simulator,
                                 waves=waves, timeout_s=300 + max_cycles / 1000,
                                 context=f"in_stall={in_stall}, out_stall={out_stall}, "
                                         f"seed={seed}")
    return StreamResult(out_beats=[int(b, 16) for b in result["out_beats"]],
                        cycles=result["cycles"], total_cycles=result["total_cycles"],
                        sim_seconds=result["seconds"], run_dir=run_dir)


def run_cocotb(component, module, spec, *, simulator=None, waves=None, timeout_s=600,
               context=""):
    """Run the cocotb test module *module* on *component* (converted to Verilog as ``top``).

    *spec* (a JSON-serializable dict) is written to a file the test reads through
    ``$LOWPREC_TB_DATA``; the test writes its result to ``$LOWPREC_TB_RESULT``. Returns
    ``(result, run_dir)``: the result as a dict, and the run directory when it is kept (with
    waveforms, or when ``$LOWPREC_KEEP_RUNS`` is set), else ``None``. A failed run raises
    :exc:`AssertionError` with the test's own error message (its result's ``error``), the
    simulator, *context* and the run directory."""
    simulator = simulator or default_simulator()
    waves = waves_requested(waves)
    verilog_text = to_verilog(component, "top")
    build_dir = build_dir_for(verilog_text, "top")
    (build_dir / "runs").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=build_dir / "runs", prefix=f"{simulator}-"))
    data_path = run_dir / "data.json"
    result_path = run_dir / "result.json"
    data_path.write_text(json.dumps(spec))
    env = {
        "LOWPREC_TB_DATA": str(data_path),
        "LOWPREC_TB_RESULT": str(result_path),
        # Icarus and Verilator honour inertial writes; this also selects cocotb's C++ clock.
        "COCOTB_TRUST_INERTIAL_WRITES": "1",
    }
    where = f"[{simulator}{', ' + context if context else ''}; run directory {run_dir}]"
    try:
        run_testbench(build_dir / "top.v", "top", module, extra_env=env,
                      simulator=simulator, waves=waves, build_dir=build_dir,
                      timeout_s=timeout_s, test_dir=run_dir)
    except SimulationFailed as e:
        error = None
        if result_path.is_file():
            error = json.loads(result_path.read_text()).get("error")
        raise AssertionError(f"{error or e.message}\n{where}") from None
    result = json.loads(result_path.read_text())
    if waves or os.environ.get("LOWPREC_KEEP_RUNS"):
        return result, run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    return result, None
